"""Deleting the files compaction replaced or bronze retention expired, once no reader can
still be reading them.

Both are superseded by a manifest line (a compacted file's entry, a retention line). A reader
that listed the manifest just before that line may open a superseded file a little later;
keeping such files for `superseded_retention_hours` after the line lets it finish. Deleting is
idempotent (a file already gone is skipped), so a crashed run is simply run again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow.fs as pafs

from binlake.bronze.manifest import ManifestEntry, live_entries
from binlake.storage import LakeStorage


@dataclass(frozen=True)
class Deleted:
    files: int
    bytes: int


def expired_replaced_files(
    entries: list[ManifestEntry], now: datetime, retention_hours: float
) -> list[str]:
    """Paths superseded by an entry written more than `retention_hours` before `now`, unless a
    later entry lists the path again (a replay wrote a lost or expired file back under its
    name): that file is live and stays."""
    cutoff = now.timestamp() - retention_hours * 3600
    live = {entry.path for entry in live_entries(entries)}
    return [
        path
        for e in entries
        if e.supersedes and e.written_at <= cutoff
        for path in e.supersedes
        if path not in live
    ]


def delete_replaced_files(storage: LakeStorage, paths: list[str]) -> Deleted:
    files = size = 0
    for path in paths:
        info = storage.filesystem.get_file_info(storage.full_path(path))
        if info.type != pafs.FileType.File:
            continue
        storage.filesystem.delete_file(storage.full_path(path))
        files, size = files + 1, size + (info.size or 0)
    return Deleted(files, size)

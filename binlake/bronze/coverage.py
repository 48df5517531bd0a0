"""Which Kafka offsets of a topic-partition bronze holds: its files as the manifest lists them.

Files are taken as readers take them (`binlake.bronze.manifest.live_entries`): the last entry of a
path describes it (a file rewritten under its name gets a new entry) and a path a later entry
supersedes (compacted away, or expired by bronze retention) is gone. A listed file holds its offsets
only while it is intact: present, with the size its entry records. Checking that is one metadata
call per file, cheap enough to do before skipping records a replay reads again; a file deleted or
lost (or cut short) no longer counts, and its offsets are written again.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

import pyarrow.fs as pafs

from binlake.bronze.manifest import Manifest, ManifestEntry, follow_entry
from binlake.storage import LakeStorage


def is_intact(storage: LakeStorage, entry: ManifestEntry) -> bool:
    """True if `entry`'s file is in the lake with the size the manifest recorded."""
    info = storage.filesystem.get_file_info(storage.full_path(entry.path))
    return info.type == pafs.FileType.File and info.size == entry.bytes


class PartitionFiles:
    """The live bronze files of one topic-partition whose offsets reach `from_offset` or beyond.

    Built from the manifest and kept current with `catch_up`, which reads only what was committed
    since; files wholly below `from_offset` are left out, so a replay of recent offsets does not
    hold the whole history in memory.
    """

    def __init__(self, topic: str, partition: int, from_offset: int = 0):
        self.topic = topic
        self.partition = partition
        self.from_offset = from_offset
        self.cursor = 0  # the next manifest commit to read
        self.by_path: dict[str, ManifestEntry] = {}
        self._runs: list[tuple[int, int, ManifestEntry]] | None = []  # by first offset
        self._run_firsts: list[int] = []

    @classmethod
    def load(
        cls, manifest: Manifest, topic: str, partition: int, from_offset: int = 0
    ) -> PartitionFiles:
        files = cls(topic, partition, from_offset)
        files.catch_up(manifest)
        return files

    def catch_up(self, manifest: Manifest) -> None:
        """Add the entries committed to `manifest` since the last read (raises OSError)."""
        entries, self.cursor = manifest.read_since(self.cursor)
        self.add(entries)

    def add(self, entries: Iterable[ManifestEntry]) -> None:
        for entry in entries:
            if entry.topic != self.topic or entry.partition != self.partition:
                continue
            follow_entry(self.by_path, entry, keep=entry.last_offset >= self.from_offset)
            self._runs = None

    def files(self) -> list[ManifestEntry]:
        """The files, by first offset."""
        return sorted(self.by_path.values(), key=lambda e: e.first_offset)

    def file_at(self, offset: int) -> ManifestEntry | None:
        """The file holding `offset` (within one of its offset runs), if any."""
        runs = self._sorted_runs()
        index = bisect.bisect_right(self._run_firsts, offset) - 1
        if index >= 0 and runs[index][1] >= offset:
            return runs[index][2]
        return None

    def files_between(self, first: int, last: int) -> list[ManifestEntry]:
        """The files holding offsets of `first..last`, by first offset."""
        runs = self._sorted_runs()
        end = bisect.bisect_right(self._run_firsts, last)
        found = {id(e): e for a, b, e in runs[:end] if b >= first}
        return sorted(found.values(), key=lambda e: e.first_offset)

    def _sorted_runs(self) -> list[tuple[int, int, ManifestEntry]]:
        if self._runs is None:
            self._runs = sorted(
                ((a, b, e) for e in self.by_path.values() for a, b in e.ranges()),
                key=lambda run: run[:2],
            )
            self._run_firsts = [run[0] for run in self._runs]
        return self._runs

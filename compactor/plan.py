"""Which bronze files to compact (pure: manifest entries and a clock in, groups out).

An hour of a topic-partition is *closed* once the hour ended `grace_minutes` ago and its newest
file is as old: a bronze worker still behind (or a late change) would otherwise add a file right
after the compaction. Its live files of one schema are then cut, in offset order, into runs of
at most `target_file_bytes` input bytes; each run of at least `min_files` files becomes one
compacted file. A late change to a compacted hour adds a new small file; once the hour is quiet
again, the compacted file and the new file are compacted together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from binlake.bronze.layout import hour_end
from binlake.bronze.manifest import ManifestEntry, live_entries
from binlake.settings import CompactorSettings


@dataclass(frozen=True)
class CompactionGroup:
    """Files of one closed hour, topic-partition and schema to be written as one file."""

    table: str
    topic: str
    partition: int
    partition_key: str
    files: tuple[ManifestEntry, ...]

    @property
    def input_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    def __str__(self) -> str:
        return (
            f"{self.table} {self.topic}[{self.partition}] hour {self.partition_key}: "
            f"{len(self.files)} files, {self.rows} rows, {self.input_bytes} bytes"
        )


def is_closed(
    files: list[ManifestEntry], partition_key: str, now: datetime, grace: timedelta
) -> bool:
    """The hour ended `grace` ago and got no new data for as long (a compacted file, written
    later, holds old data and does not count)."""
    writes = [f.written_at for f in files if not f.supersedes] or [0.0]
    return (
        now >= hour_end(partition_key) + grace
        and now.timestamp() >= max(writes) + grace.total_seconds()
    )


def compaction_groups(
    entries: list[ManifestEntry], now: datetime, settings: CompactorSettings
) -> list[CompactionGroup]:
    """The groups to compact now, oldest hour first."""
    grace = timedelta(minutes=settings.grace_minutes)
    by_hour: dict[tuple[str, str, int, str, str], list[ManifestEntry]] = {}
    for entry in live_entries(entries):
        key = (
            entry.table,
            entry.topic,
            entry.partition,
            entry.partition_key,
            entry.schema_fingerprint,
        )
        by_hour.setdefault(key, []).append(entry)
    groups: list[CompactionGroup] = []
    for (table, topic, partition, partition_key, _), files in sorted(by_hour.items()):
        if len(files) < settings.min_files or not is_closed(files, partition_key, now, grace):
            continue
        for run in _runs_up_to(
            sorted(files, key=lambda f: f.first_offset), settings.target_file_bytes
        ):
            if len(run) >= settings.min_files:
                groups.append(CompactionGroup(table, topic, partition, partition_key, tuple(run)))
    return groups


def _runs_up_to(files: list[ManifestEntry], target_bytes: int) -> list[list[ManifestEntry]]:
    """`files` cut in order into runs of at most `target_bytes` (a bigger file stands alone)."""
    runs: list[list[ManifestEntry]] = [[]]
    size = 0
    for file in files:
        if runs[-1] and size + file.bytes > target_bytes:
            runs.append([])
            size = 0
        runs[-1].append(file)
        size += file.bytes
    return runs

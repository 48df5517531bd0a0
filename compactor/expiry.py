"""Expiring old bronze (``compactor.bronze_retention_days``; unset, bronze is kept forever).

A file expires once its hour ended `bronze_retention_days` before now, it has been in bronze as
long (a bronze worker catching up after an outage writes files of old hours that silver has not
merged yet) and every lower offset of its topic-partition expires with it or before. Expiry so
only ever takes a prefix of a partition's offsets: what bronze holds stays one unbroken run,
which the offset continuity check starts at its first offset, even when a late change put high
offsets into an old hour (that file waits for the files below it).

Expiring is one manifest line per topic-partition, as consistent as compaction's swap: a
retention entry, which is no file, supersedes the expired files. Readers drop them from that
line on; the files stay on disk `superseded_retention_hours` for readers that listed them just
before, then ``compactor.retention`` deletes them with the files compaction replaced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from binlake.bronze.layout import hour_end
from binlake.bronze.manifest import Manifest, ManifestEntry, ManifestState, live_entries
from compactor.rewrite import offset_runs

RETENTION_REASON = "retention"

PartitionOfTable = tuple[str, str, int]  # table, topic, partition


@dataclass(frozen=True)
class Expiry:
    """Files of one topic-partition dropped from bronze, and the manifest line that did it."""

    entry: ManifestEntry
    files: tuple[ManifestEntry, ...]


def expiring_files(
    entries: Iterable[ManifestEntry], now: datetime, retention_days: float
) -> dict[PartitionOfTable, list[ManifestEntry]]:
    """The live files to expire now per topic-partition, by first offset (pure)."""
    cutoff = now - timedelta(days=retention_days)
    by_partition: dict[PartitionOfTable, list[ManifestEntry]] = {}
    for entry in live_entries(entries):
        by_partition.setdefault((entry.table, entry.topic, entry.partition), []).append(entry)
    expiring: dict[PartitionOfTable, list[ManifestEntry]] = {}
    for key, files in sorted(by_partition.items()):
        old = {
            f.path
            for f in files
            if hour_end(f.partition_key) < cutoff and f.written_at < cutoff.timestamp()
        }
        kept_from = min(
            (first for f in files if f.path not in old for first, _ in f.ranges()), default=None
        )
        prefix = [
            f for f in files if f.path in old and (kept_from is None or f.last_offset < kept_from)
        ]
        if prefix:
            expiring[key] = sorted(prefix, key=lambda f: f.first_offset)
    return expiring


def retention_entry(
    partition: PartitionOfTable, files: list[ManifestEntry], now: datetime
) -> ManifestEntry:
    """The manifest line that drops `files`: it names no file, holds no rows and no schema (so
    schema history skips it); its partition key is the newest hour it expires."""
    table, topic, number = partition
    runs = offset_runs(files)
    return ManifestEntry(
        table=table,
        topic=topic,
        partition=number,
        first_offset=runs[0][0],
        last_offset=runs[-1][1],
        rows=0,
        path="",
        partition_key=max(f.partition_key for f in files),
        bytes=0,
        written_at=now.timestamp(),
        rotation_reason=RETENTION_REASON,
        offset_ranges=runs if len(runs) > 1 else [],
        supersedes=[f.path for f in files],
    )


def expire_bronze(manifest: Manifest, now: datetime, retention_days: float) -> list[Expiry]:
    """Drop the files due from bronze, one manifest line per topic-partition."""
    # Decided in the commit's plan, from the manifest as of its last commit: a compaction
    # swapped in meanwhile would otherwise leave its compacted file live while the retention
    # line supersedes the small files it replaced.
    expiries: list[Expiry] = []

    def plan(state: ManifestState) -> list[ManifestEntry]:
        expiring = expiring_files(state.live(), now, retention_days)
        expiries[:] = [
            Expiry(retention_entry(partition, files, now), tuple(files))
            for partition, files in expiring.items()
        ]
        return [expiry.entry for expiry in expiries]

    manifest.commit(plan)
    return expiries

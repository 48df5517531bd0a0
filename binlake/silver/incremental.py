"""The reading side of every silver table: unconsumed bronze changes, the files it has not
merged yet, and the newest source time it holds.

Eager automation marks every bronze report made before a materialization as handled. A file
that reached the manifest while silver was merging would then wait for the next change to be
picked up, so a silver asset reads again until the manifest stops growing under it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from binlake.bronze.manifest import ManifestEntry
from binlake.bronze.reader import BronzeRead, BronzeReader
from binlake.silver.consumed import ConsumedOffsets
from binlake.silver.schema_guard import CompletedResync, refuse_unhealed_schema_changes

MAX_CATCH_UP_READS = 5


def unconsumed_reads(
    bronze: BronzeReader,
    table: str,
    consumed: ConsumedOffsets,
    completed_resyncs: Sequence[CompletedResync] = (),
    merged_schema_version: int | None = None,
) -> Iterator[BronzeRead]:
    """Reads of the bronze changes of `table` outside `consumed`, until the manifest is still.

    Each read moves `consumed`'s manifest cursor; the caller adds the offsets it merged. A read
    whose files start a breaking schema step that none of `completed_resyncs` healed raises
    `SchemaNeedsResync` before anything is merged (see `refuse_unhealed_schema_changes`);
    `merged_schema_version` (`SilverDeltaTable.merged_schema_version`) spares that check the
    whole manifest when every file read is of the version merged last. The caller merges each
    read before asking for the next.
    """
    for _ in range(MAX_CATCH_UP_READS):
        read = bronze.read_table(table, consumed)
        refuse_unhealed_schema_changes(
            bronze, read, completed_resyncs, _merged_up_to(read), merged_schema_version
        )
        consumed.manifest_cursor = read.manifest_bytes
        yield read
        if read.frame.height and read.schema_version:
            merged_schema_version = read.schema_version
        if bronze.manifest_size() == read.manifest_bytes:
            return


def unmerged_files(
    bronze: BronzeReader, table: str, consumed: ConsumedOffsets, written_before: float
) -> list[ManifestEntry]:
    """The files of `table` written before `written_before` (epoch seconds) that a silver table
    holding `consumed` has not merged, in manifest order; none when the manifest is shorter than
    `consumed`'s cursor: a new lake under an old silver, which the silver asset itself reports."""
    if bronze.manifest_size() < consumed.manifest_cursor:
        return []
    entries, _ = bronze.read_manifest_since(consumed.manifest_cursor)
    return [
        e
        for e in entries
        if e.table == table and e.written_at < written_before and not consumed.covers_entry(e)
    ]


def _merged_up_to(read: BronzeRead) -> dict[int, int]:
    """Per partition, the highest offset silver holds once `read` is merged (manifest order:
    every file listed before these was merged already)."""
    highest: dict[int, int] = {}
    for entry in read.entries:
        highest[entry.partition] = max(highest.get(entry.partition, -1), entry.last_offset)
    return highest


def source_time_metadata(newest_source_ts_ms: int | None) -> dict[str, Any]:
    """The newest source commit a silver table holds, as the freshness checks read it."""
    if newest_source_ts_ms is None:
        return {}
    moment = datetime.fromtimestamp(newest_source_ts_ms / 1000, tz=UTC)
    return {"max_source_ts_ms": newest_source_ts_ms, "max_source_ts": moment.isoformat()}

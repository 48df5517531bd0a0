"""The end of a resync in silver: rows the source no longer has become tombstones.

An incremental snapshot (``binlake.silver.resync``) re-reads every row the source has; it cannot say
which rows the source lost while capture missed it (a delete outside the binlog, a paused
connector, a TRUNCATE before it was captured). Once the resync is over and silver has merged
every bronze record up to its end, the keys it re-read are known (its ``r`` rows with
``source.snapshot = incremental`` between its start and end offsets), and every live silver row

* whose key the resync did not see, and
* whose silver position (binlog file, pos) is before the resync's start (the binlog position
  just before its signal)

is a row the source did not have when the resync read its chunk: it becomes a tombstone at the
resync's start position. A row the stream inserted or changed after the start keeps its newer
position and stays; an older change arriving later cannot bring a swept row back.

The sweep is one Delta commit whose metadata names the resync (``binlake.silver.resync.swept``), so
it happens once even if recording it in the lake (``<id>-swept.json``) is interrupted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake

from binlake.bronze.layout import (
    OFFSET,
    OP,
    PARTITION,
    PROVENANCE_COLUMNS,
    SOURCE_FILE,
    SOURCE_POS,
    SOURCE_ROW,
    SOURCE_SNAPSHOT,
    SOURCE_TS_MS,
)
from binlake.bronze.manifest import Manifest, ManifestEntry, live_entries
from binlake.silver.consumed import COMMIT_METADATA_KEY, ConsumedOffsets
from binlake.silver.delta_table import (
    DELETED,
    HISTORY_SEARCH_LIMIT,
    STORED_PROVENANCE,
    SilverDeltaTable,
)
from binlake.silver.resync import INCREMENTAL, ResyncLog, ResyncState, ResyncSweep
from binlake.storage import LakeStorage

SWEPT_METADATA_KEY = "binlake.silver.resync.swept"
SNAPSHOT_READ = "r"
DELETE = "d"


@dataclass(frozen=True)
class SweepOutcome:
    """What one silver run did about one pending resync of its table."""

    resync_id: str
    swept: ResyncSweep | None
    waiting_for: str = ""  # why it was not swept yet


def sweep_resyncs(
    storage: LakeStorage,
    target: SilverDeltaTable,
    table: str,
    *,
    log: Callable[[str], None] = lambda message: None,
) -> list[SweepOutcome]:
    """Sweep every resync of `table` Debezium finished and silver has merged, oldest first."""
    resync_log = ResyncLog(storage)
    outcomes: list[SweepOutcome] = []
    for state in resync_log.pending(table):
        if state.completion is None:
            continue  # Debezium is still reading
        outcome = sweep_one(storage, target, state)
        if outcome.swept is not None:
            resync_log.record_sweep(outcome.swept)
            log(
                f"{table}: resync {state.request.id} swept: {outcome.swept.keys_seen} keys "
                f"re-read, {outcome.swept.rows_tombstoned} rows the source no longer has "
                "tombstoned"
            )
        else:
            log(f"{table}: resync {state.request.id} not swept yet: {outcome.waiting_for}")
        outcomes.append(outcome)
        if outcome.swept is None:
            break  # a later resync's sweep must not come before an earlier one's
    return outcomes


def sweep_one(storage: LakeStorage, target: SilverDeltaTable, state: ResyncState) -> SweepOutcome:
    request, completion = state.request, state.completion
    assert completion is not None
    done = _swept_commit(target, request.id)
    if done is not None:  # swept before, the lake record was not written
        return SweepOutcome(request.id, _sweep_record(state, done, keys_seen=-1, tombstoned=-1))
    entries = [
        e
        for e in live_entries(Manifest(storage).entries_for(request.table))
        if e.is_file and e.topic == request.topic
    ]
    for partition, end in completion.end_offsets.items():
        held = max((e.last_offset for e in entries if e.partition == partition), default=-1)
        if held < end - 1:
            return SweepOutcome(
                request.id,
                None,
                f"bronze holds {request.topic}[{partition}] up to offset {held}, the resync "
                f"ended at {end - 1}",
            )
    reads = _bronze_range(storage, entries, state)
    consumed = target.consumed()
    unmerged = consumed.unconsumed(reads.frame) if reads.frame.height else reads.frame
    if unmerged.height:
        return SweepOutcome(
            request.id, None, f"silver has not merged {unmerged.height} bronze rows of the resync"
        )
    if not target.exists():  # silver has no row of the table: nothing to remove
        seen = _keys_seen(reads.frame, reads.primary_key or _own_columns(reads.frame), state)
        return SweepOutcome(
            request.id, _sweep_record(state, None, keys_seen=seen.height, tombstoned=0)
        )
    silver = target.read_all()
    # The table's key as bronze knows it now (its newest file), even when the resync read no
    # row at all (a table the source emptied); without one, a row is all its columns.
    primary_key = list(entries[-1].primary_key) if entries else reads.primary_key
    key = primary_key or _own_columns(silver)
    seen = _keys_seen(reads.frame, key, state)
    tombstones = rows_to_tombstone(silver, seen, key, state)
    metadata = {SWEPT_METADATA_KEY: request.id}
    if tombstones.height:
        stats = target.merge(
            tombstones, key, consumed, nullable_key=not primary_key, extra_metadata=metadata
        )
        version = stats.version
    else:
        version = _commit_marker(target, consumed, metadata)
    sweep = _sweep_record(state, version, keys_seen=seen.height, tombstoned=tombstones.height)
    bounds: list[tuple[int, int, int]] = []
    if reads.frame.height:
        bounds = list(
            reads.frame.filter(_resync_reads(state))
            .group_by(PARTITION)
            .agg(pl.col(OFFSET).min().alias("first"), pl.col(OFFSET).max().alias("last"))
            .iter_rows()
        )
    return SweepOutcome(
        request.id,
        ResyncSweep(
            **{
                **sweep.__dict__,
                "first_offsets": {int(p): int(a) for p, a, _ in bounds},
                "last_offsets": {int(p): int(b) for p, _, b in bounds},
            }
        ),
    )


@dataclass(frozen=True)
class _BronzeRange:
    frame: pl.DataFrame
    primary_key: list[str]


def _bronze_range(
    storage: LakeStorage, entries: list[ManifestEntry], state: ResyncState
) -> _BronzeRange:
    """Bronze rows of the resync's topic between its start and end offsets."""
    request, completion = state.request, state.completion
    assert completion is not None
    frames: list[pl.DataFrame] = []
    primary_key: list[str] = []
    for entry in entries:
        start = request.start_offsets.get(entry.partition, 0)
        end = completion.end_offsets.get(entry.partition, 0)
        if entry.last_offset < start or entry.first_offset >= end:
            continue
        arrow = pq.read_table(storage.full_path(entry.path), filesystem=storage.filesystem)
        primary_key = list(entry.primary_key) or primary_key
        frame = pl.from_arrow(arrow)
        assert isinstance(frame, pl.DataFrame)
        frames.append(frame.filter(pl.col(OFFSET).is_between(start, end - 1)))
    if not frames:
        return _BronzeRange(pl.DataFrame(), primary_key)
    return _BronzeRange(pl.concat(frames, how="diagonal_relaxed"), primary_key)


def _own_columns(frame: pl.DataFrame) -> list[str]:
    """The table's own columns of a bronze or silver frame (provenance left out)."""
    return [c for c in frame.columns if c not in PROVENANCE_COLUMNS and c not in STORED_PROVENANCE]


def _resync_reads(state: ResyncState) -> pl.Expr:
    """Rows of this resync: incremental snapshot reads after its signal."""
    position = state.request.signal_position
    return (
        (pl.col(OP) == SNAPSHOT_READ)
        & (pl.col(SOURCE_SNAPSHOT) == INCREMENTAL)
        & ~_before(position.file, position.pos)
    )


def _before(file: str, pos: int) -> pl.Expr:
    """Rows whose (binlog file, pos) is before (file, pos); a row without a position too.

    Binlog file names end in a zero-padded sequence number, so they order as text.
    """
    return (
        pl.col(SOURCE_FILE).is_null()
        | (pl.col(SOURCE_FILE) < file)
        | ((pl.col(SOURCE_FILE) == file) & (pl.col(SOURCE_POS).fill_null(-1) < pos))
    )


def _keys_seen(frame: pl.DataFrame, key: list[str], state: ResyncState) -> pl.DataFrame:
    if frame.height == 0:
        return pl.DataFrame()
    return frame.filter(_resync_reads(state)).select(key).unique()


def rows_to_tombstone(
    silver: pl.DataFrame, seen: pl.DataFrame, key: list[str], state: ResyncState
) -> pl.DataFrame:
    """Tombstones (key, position = the resync's start, ``_deleted``) for the live silver rows
    older than the resync whose key it did not see; typed like silver's columns."""
    position = state.request.signal_position
    live = silver.filter(~pl.col(DELETED)).filter(_before(position.file, position.pos))
    if seen.height:
        seen = seen.select([pl.col(c).cast(silver.schema[c]) for c in key])
        live = live.join(seen, on=key, how="anti", nulls_equal=True)
    stored = silver.schema
    return live.select(
        *key,
        pl.lit(position.file, stored[SOURCE_FILE]).alias(SOURCE_FILE),
        pl.lit(position.pos, stored[SOURCE_POS]).alias(SOURCE_POS),
        pl.lit(None, stored[SOURCE_ROW]).alias(SOURCE_ROW),
        pl.lit(None, stored[OFFSET]).alias(OFFSET),
        pl.lit(state.request.requested_ms, stored[SOURCE_TS_MS]).alias(SOURCE_TS_MS),
        pl.lit(DELETE, stored[OP]).alias(OP),
        pl.lit(True).alias(DELETED),
    )


def _commit_marker(
    target: SilverDeltaTable, consumed: ConsumedOffsets, metadata: dict[str, str]
) -> int:
    """An empty commit carrying `metadata` (a sweep with nothing to remove is still recorded)."""
    table = DeltaTable(target.uri, storage_options=target.storage_options)
    empty = pa.schema(table.schema().to_arrow()).empty_table()  # type: ignore[arg-type]
    write_deltalake(
        target.uri,
        empty,
        mode="append",
        storage_options=target.storage_options,
        commit_properties=CommitProperties(
            custom_metadata={COMMIT_METADATA_KEY: consumed.to_json(), **metadata}
        ),
    )
    return DeltaTable(target.uri, storage_options=target.storage_options).version()


def _swept_commit(target: SilverDeltaTable, resync_id: str) -> int | None:
    """The silver version whose commit swept `resync_id`, if one of the recent ones did."""
    if not target.exists():
        return None
    table = DeltaTable(target.uri, storage_options=target.storage_options)
    for commit in table.history(HISTORY_SEARCH_LIMIT):
        if commit.get(SWEPT_METADATA_KEY) == resync_id:
            return int(commit["version"])
    return None


def _sweep_record(
    state: ResyncState, version: int | None, *, keys_seen: int, tombstoned: int
) -> ResyncSweep:
    return ResyncSweep(
        id=state.request.id,
        table=state.request.table,
        swept_at=datetime.now(UTC).isoformat(),
        keys_seen=keys_seen,
        rows_tombstoned=tombstoned,
        silver_version=version,
    )

"""The schema guard: silver refuses a breaking bronze schema step until a resync healed it.

The bronze worker never casts a record to an older schema. After a DDL it starts a new schema
version of the table (recorded with a schema fingerprint in each file's manifest entry): an
accepted change (new or dropped column, widened type) has a merged schema that readers widen
old files to; a breaking one (type family change, narrowing, primary key change) is written with
its own types. Here a table's schema versions are read (one file's Parquet footer per version)
and each is classified against the one before with the rules the worker used
(`binlake.bronze.schema_drift.classify`). A breaking step is healed once a completed resync
(`binlake.silver.resync`) re-read the table after it and silver merged all of it; until then
silver refuses the step's rows (`refuse_unhealed_schema_changes`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from binlake.bronze.layout import OFFSET, SOURCE_FILE, SOURCE_POS
from binlake.bronze.manifest import ManifestEntry
from binlake.bronze.reader import BronzeRead, BronzeReader, listed_file_errors
from binlake.bronze.schema_drift import (
    BreakingChange,
    ChangeKind,
    SchemaNeedsResync,
    classify,
    row_schema_of,
)
from binlake.silver.resync import BinlogPosition, ResyncLog
from binlake.storage import LakeStorage


@dataclass(frozen=True)
class SchemaVersion:
    """One schema version of a table as bronze holds it."""

    version: int
    fingerprint: str
    schema: pa.Schema  # the table's columns in the version's files (provenance removed)
    primary_key: tuple[str, ...]
    first_path: str
    files: int
    # Where the version's first record is: its topic partition and offset (a table's records
    # are in one partition, in binlog order).
    partition: int = 0
    first_offset: int = 0
    # The binlog position (file, pos) of that first record, when bronze has it.
    first_position: BinlogPosition | None = None


@dataclass(frozen=True)
class VersionStep:
    """How one schema version follows the previous one."""

    table: str
    previous: int
    version: int
    kind: ChangeKind
    messages: tuple[str, ...]  # breaking changes first, then accepted ones
    breaking: tuple[BreakingChange, ...] = ()
    partition: int = 0  # where the version this step starts begins
    first_offset: int = 0
    first_position: BinlogPosition | None = None  # that first record's binlog position

    def needs_resync(self) -> SchemaNeedsResync:
        """The error silver raises for this step until a resync has healed it."""
        return SchemaNeedsResync(
            self.table,
            self.breaking,
            schema_version=self.version,
            first_offset=self.first_offset,
            first_position=None if self.first_position is None else str(self.first_position),
            detail=f" (the change starts at offset {self.first_offset} of partition "
            f"{self.partition}, after schema version {self.previous})",
        )

    def __str__(self) -> str:
        return (
            f"{self.table} schema version {self.previous} -> {self.version} ({self.kind.value}): "
            + "; ".join(self.messages)
        )


def schema_versions(storage: LakeStorage, entries: list[ManifestEntry]) -> list[SchemaVersion]:
    """The tracked schema versions in `entries` (one table's), oldest first.

    Version 0 (files written before versions were tracked, or tombstones of a table whose rows
    were never seen) is left out. Files of one version normally share one fingerprint; should
    two writers have diverged, each (version, fingerprint) is a step of its own, in manifest
    order.
    """
    first: dict[tuple[int, str], tuple[int, ManifestEntry]] = {}
    files: dict[tuple[int, str], int] = {}
    lowest: dict[tuple[int, str], ManifestEntry] = {}
    for position, entry in enumerate(entries):
        if entry.schema_version <= 0 or not entry.is_file:
            continue
        key = (entry.schema_version, entry.schema_fingerprint)
        first.setdefault(key, (position, entry))
        files[key] = files.get(key, 0) + 1
        if key not in lowest or entry.first_offset < lowest[key].first_offset:
            lowest[key] = entry
    versions: list[SchemaVersion] = []
    for key, (_, entry) in sorted(first.items(), key=lambda item: (item[0][0], item[1][0])):
        versions.append(
            SchemaVersion(
                version=entry.schema_version,
                fingerprint=entry.schema_fingerprint,
                schema=_row_schema(storage, entry.path),
                primary_key=tuple(entry.primary_key),
                first_path=entry.path,
                files=files[key],
                partition=entry.partition,
                first_offset=lowest[key].first_offset,
                first_position=_first_position(storage, lowest[key]),
            )
        )
    return versions


def _first_position(storage: LakeStorage, entry: ManifestEntry) -> BinlogPosition | None:
    """The binlog position of the first row change in `entry`'s file (None without one)."""
    columns = [OFFSET, SOURCE_FILE, SOURCE_POS]
    try:
        table = pq.read_table(
            storage.full_path(entry.path), columns=columns, filesystem=storage.filesystem
        )
    except (FileNotFoundError, KeyError, pa.ArrowInvalid):
        return None
    rows = pl.from_arrow(table).drop_nulls().sort(OFFSET)
    assert isinstance(rows, pl.DataFrame)
    if rows.is_empty():
        return None
    return BinlogPosition(str(rows[SOURCE_FILE][0]), int(rows[SOURCE_POS][0]))


def _row_schema(storage: LakeStorage, path: str) -> pa.Schema:
    with listed_file_errors(path, reading="the schema of "):
        return row_schema_of(pq.read_schema(storage.full_path(path), filesystem=storage.filesystem))


def version_steps(table: str, versions: list[SchemaVersion]) -> list[VersionStep]:
    steps: list[VersionStep] = []
    for previous, current in pairwise(versions):
        change = classify(
            previous.schema, current.schema, previous.primary_key, current.primary_key
        )
        messages = tuple(str(b) for b in change.breaking) + tuple(str(c) for c in change.changes)
        steps.append(
            VersionStep(
                table,
                previous.version,
                current.version,
                change.kind,
                messages,
                change.breaking,
                current.partition,
                current.first_offset,
                current.first_position,
            )
        )
    return steps


@dataclass(frozen=True)
class CompletedResync:
    """A finished resync (Debezium incremental snapshot) of a table, as bronze holds it.

    Offsets are in the table's topic partition: `first_offset` is where the resync's first
    snapshot read landed (or where its signal was taken, anything after which its reads come),
    `last_offset` its last read. It heals a breaking schema step when it started after the step
    (`first_offset` > the step's first offset: every row it re-read has the new schema) and
    silver holds everything up to `last_offset`.
    """

    table: str
    partition: int
    first_offset: int
    last_offset: int
    # The binlog position just before the resync's signal: every row it re-read was read after.
    signal_position: BinlogPosition | None = None


def completed_resyncs(storage: LakeStorage, table: str) -> list[CompletedResync]:
    """The resyncs of `table` Debezium finished, by partition, from the lake's resync records.

    The first offset is the topic's end when the resync was asked for (every re-read row comes
    after it), the last the topic's end once every re-read row was in Kafka, less one.
    """
    done: list[CompletedResync] = []
    for state in ResyncLog(storage).states(table):
        completion = state.completion
        if completion is None or not completion.succeeded:
            continue
        for partition, end in sorted(completion.end_offsets.items()):
            first = state.request.start_offsets.get(partition, 0)
            done.append(
                CompletedResync(
                    table,
                    partition,
                    first,
                    max(first, end - 1),
                    state.request.signal_position,
                )
            )
    return done


def heals(resync: CompletedResync, step: VersionStep, merged_up_to: int | None) -> bool:
    """True if `resync` re-read the table after `step` and silver (holding every offset of the
    partition up to `merged_up_to`) has merged all of it."""
    return (
        resync.table == step.table
        and resync.partition == step.partition
        and began_after(resync, step)
        and merged_up_to is not None
        and resync.last_offset <= merged_up_to
    )


def began_after(resync: CompletedResync, step: VersionStep) -> bool:
    """Whether every row `resync` re-read has the schema `step` starts.

    By binlog position where both are known: the resync's signal came after the step's first
    record. (Offsets cannot tell: the start offset recorded is the topic's end when the resync
    was asked for, which is the step's own first record on a quiet table.) Otherwise by offset: it began after the step's first record.
    """
    if resync.signal_position is not None and step.first_position is not None:
        return resync.signal_position > step.first_position
    return resync.first_offset > step.first_offset


def unhealed_steps(
    steps: Sequence[VersionStep],
    resyncs: Sequence[CompletedResync],
    merged_up_to: Mapping[int, int] | None = None,
    *,
    versions: Collection[int] | None = None,
) -> list[VersionStep]:
    """The breaking steps (into `versions` when given) that no resync in `resyncs` healed.

    `merged_up_to` maps a partition to the highest offset silver holds (or will hold once the
    batch being merged is in) with nothing missing below it; None: count each resync as merged
    once it completed (the bronze check's view: bronze holds the resync).
    """
    unhealed: list[VersionStep] = []
    for step in steps:
        if step.kind is not ChangeKind.BREAKING:
            continue
        if versions is not None and step.version not in versions:
            continue
        up_to = None if merged_up_to is None else merged_up_to.get(step.partition)
        if not any(
            heals(r, step, r.last_offset if merged_up_to is None else up_to) for r in resyncs
        ):
            unhealed.append(step)
    return unhealed


def refuse_unhealed_schema_changes(
    bronze: BronzeReader,
    read: BronzeRead,
    resyncs: Sequence[CompletedResync] = (),
    merged_up_to: Mapping[int, int] | None = None,
    merged_schema_version: int | None = None,
) -> None:
    """Raise `SchemaNeedsResync` if the bronze files of `read` start a breaking schema step
    (a rename, narrowing, primary key change, re-added column...) that no completed resync has
    healed: merging them would leave silver with nulls or wrong values where the source has
    others. Silver keeps failing (its cursor does not move) until the resync is merged.
    `merged_schema_version` is the bronze schema version silver merged last, if known.
    """
    batch_versions = {e.schema_version for e in read.entries if e.schema_version > 0}
    if not batch_versions or batch_versions == {merged_schema_version}:
        # Nothing new, or only more files of the version silver merged last: the step into it
        # was checked when its first files were merged. The full check reads the whole manifest
        # (7 s for 100k entries on a busy 2-core machine).
        return
    entries = bronze.manifest().entries_for(read.table)
    # Only versions up to the newest in the batch matter (and their predecessors).
    newest = max(batch_versions)
    relevant = [e for e in entries if 0 < e.schema_version <= newest]
    steps = version_steps(read.table, schema_versions(bronze.storage, relevant))
    unhealed = unhealed_steps(steps, resyncs, merged_up_to, versions=batch_versions)
    if unhealed:
        raise unhealed[0].needs_resync()

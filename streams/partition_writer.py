"""One bronze writer per Kafka topic-partition: an explicit state machine.

Modelled on the Kafka Connect S3 sink's TopicPartitionWriter. A writer buffers the rows of one
topic-partition and turns them into bronze files. A file holds consecutive offsets of one
topic-partition, one hour bucket, one table and one row schema, so a record for another hour or
another schema rotates the current file before it is buffered. A file is also rotated as its
`FlushPolicy` says (rows, about so many bytes of records, seconds after its first row was
buffered: checked on every record and by `tick()`, which a timer calls), and when the partition
is revoked or the worker shuts down.

States::

    EMPTY --add--> BUFFERING --rotate--> FLUSHING --file + manifest durable--> EMPTY
                                            \\--error--> BUFFERING (rotation stays due, retried)
    EMPTY/BUFFERING --close--> (flush) --> CLOSED

Flushing writes the Parquet file atomically at `bronze_file_path(..., first_offset)`, then appends
its `ManifestEntry`, and only then releases the records' tokens (the caller acks them, which lets
the consumer commit their offsets). A retried flush produces the same file under the same name.

Schema drift (see `binlake.bronze.schema_drift`): the writer keeps per table a schema version and the
table's cumulative schema, resumed from the table's last manifest entry and its file's footer.
An event whose row schema differs is classified against it. An accepted change (new or dropped
column, widened type) and a breaking one (type family change, narrowing, primary key change)
both rotate the file and start a new schema version, so a file holds one schema; an accepted
change's file has the merged schema (dropped columns kept as nulls), a breaking change's file
the new schema as it is, never cast, and the worker logs an error naming the column and both
types. Files record the version and a schema fingerprint in their manifest entry.

Offsets at or below `resume_after` (the manifest's last offset for the partition) may be in
bronze already, whatever the committed consumer offset said (a crash before the commit, a replay
after a consumer group reset): the writer looks them up among the partition's listed files
(`binlake.bronze.coverage`). An offset held by an intact file is released at once without being
written (`is_handled`, `skip_handled`), and a file being buffered is closed before it, so no file
spans offsets another file holds. An offset no intact file holds (its file was deleted or lost, or
never written) is written again; while it belongs to a lost file's range, the new file ends where
the lost one did, so it has the lost file's name and bounds, and if it comes out identical to the
lost file's entry (same offsets, rows, bytes, schema) no second manifest entry is appended: the
file is restored in place. Records that are deliberately not written (dead letters,
schema-change records) are `pass_over`-ed: their tokens are held behind any buffered rows and
released in offset order.

Nothing here sleeps or reads the wall clock for decisions: `clock` (monotonic seconds) drives the
age rotation and `wall_clock` only stamps `ManifestEntry.written_at`, both injectable for tests.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from binlake.bronze.coverage import PartitionFiles, is_intact
from binlake.bronze.layout import HourBucket, bronze_file_path, is_safe_table_name
from binlake.bronze.manifest import Manifest, ManifestEntry
from binlake.bronze.parquet_format import bronze_schema, encode_bronze_file
from binlake.bronze.partitioner import TOMBSTONE, TRUNCATE, PreviousDelete, event_time_ms, key_of
from binlake.bronze.schema_drift import (
    ChangeKind,
    SchemaChange,
    classify,
    fingerprint,
    fits_within,
    row_schema_of,
)
from binlake.errors import DecodeError, StorageUnavailableError
from binlake.storage import LakeStorage
from cdc.column_defaults import DEFAULT_KEY
from streams.flush_policy import FlushPolicy

log = logging.getLogger(__name__)

_HOUR_MS = 3_600_000
# Schema version of a file of tombstones whose key columns fit no schema the writer knows (no
# full row of the table seen yet): 0 is "not tracked" in `ManifestEntry.schema_version`.
UNTRACKED = 0


class WriterState(Enum):
    EMPTY = "empty"  # nothing buffered
    BUFFERING = "buffering"  # rows of one open file are buffered
    FLUSHING = "flushing"  # the open file is being written and recorded in the manifest
    CLOSED = "closed"  # partition revoked or worker stopped; accepts nothing more


class RotationReason(str, Enum):
    """Why a bronze file was closed; recorded as `ManifestEntry.rotation_reason`."""

    ROWS = "rows"
    BYTES = "bytes"
    AGE = "age"
    HOUR_BOUNDARY = "hour_boundary"
    SCHEMA_CHANGE = "schema_change"
    PARTITION_REVOKED = "partition_revoked"
    SHUTDOWN = "shutdown"
    # The next offset belongs to another file bronze lists (an intact one, or a lost one that
    # is being rewritten with its own bounds).
    BRONZE_BOUNDARY = "bronze_boundary"


@dataclass
class Released:
    """Work that is finished: tokens the caller may ack (in order) and the files written."""

    tokens: list[Any] = field(default_factory=list)
    files: list[ManifestEntry] = field(default_factory=list)

    def extend(self, other: Released) -> Released:
        self.tokens.extend(other.tokens)
        self.files.extend(other.files)
        return self

    def __bool__(self) -> bool:
        return bool(self.tokens or self.files)


class WriterClosedError(RuntimeError):
    """A record was offered to a writer whose partition was revoked or that was shut down."""


@dataclass(frozen=True)
class TableSchema:
    """A table's current schema version and cumulative row schema (None: not known yet)."""

    version: int
    schema: pa.Schema | None
    primary_key: tuple[str, ...]


@dataclass(frozen=True)
class _Placement:
    """The schema version and file schema an event's row is written under."""

    version: int
    schema: pa.Schema
    primary_key: tuple[str, ...]
    change: SchemaChange | None = None  # why a new version starts with this event


class PartitionWriter:
    """Buffers one topic-partition's changes and writes them as bronze files."""

    def __init__(
        self,
        topic: str,
        partition: int,
        *,
        storage: LakeStorage,
        manifest: Manifest,
        flush_policy: FlushPolicy,
        resume_after: int = -1,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.topic = topic
        self.partition = partition
        self.storage = storage
        self.manifest = manifest
        self.flush_policy = flush_policy
        self.resume_after = resume_after
        self.clock = clock
        self.wall_clock = wall_clock
        self.state = WriterState.EMPTY
        # Every offset <= this one that this writer was given is durable in bronze or passed over.
        self._handled_through = -1
        # Highest offset this writer has been given (buffered, passed over or handled).
        self._seen_through = -1
        # The partition's listed files, loaded when an offset <= resume_after first comes.
        self._bronze: PartitionFiles | None = None
        self._intact: dict[tuple[str, int], bool] = {}  # (path, bytes) -> is_intact, cached
        self._due: RotationReason | None = None  # a rotation that failed and must be retried
        self._valid_schemas: list[pa.Schema] = []  # recently checked row schemas (identity)
        self._bucket_start_ms = 0
        self._previous_delete: PreviousDelete | None = None  # for its tombstone's hour
        self._tables: dict[str, TableSchema] = {}  # schema version per table, see _table_schema
        # Placements of recently seen row schemas (by identity: decoded events share one schema
        # object per Debezium schema), so a record of a known shape is not classified again.
        self._placements: dict[tuple[int, str], tuple[pa.Schema, tuple[str, ...], _Placement]] = {}
        self._reset_file()

    # -- observable state ---------------------------------------------------------------------

    @property
    def committable_offset(self) -> int:
        """The consumer offset that may be committed: every offset below it is handled."""
        return self._handled_through + 1

    @property
    def buffered_rows(self) -> int:
        return len(self._rows)

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    @property
    def first_offset(self) -> int | None:
        return self._rows[0][0] if self._rows else None

    @property
    def bucket(self) -> HourBucket | None:
        return self._bucket

    @property
    def row_schema(self) -> pa.Schema | None:
        return self._schema

    @property
    def schema_version(self) -> int:
        """Schema version of the open file (UNTRACKED when nothing is buffered)."""
        return self._version

    def table_schema(self, table: str) -> TableSchema | None:
        """The schema version and cumulative schema tracked for `table`, if it was seen."""
        return self._tables.get(table)

    @property
    def rotation_due(self) -> RotationReason | None:
        return self._due

    def age(self) -> float:
        """Seconds since the open file's first row was buffered (0 when nothing is)."""
        if self._first_row_at is None:
            return 0.0
        return self.clock() - self._first_row_at

    def is_handled(self, offset: int) -> bool:
        """True if `offset` is already in bronze (or passed over): it must not be written again.

        Raises StorageUnavailableError if the manifest or the lake cannot be read.
        """
        return offset <= self._handled_through or self._listed_file_at(offset)[1]

    # -- transitions --------------------------------------------------------------------------

    def add(
        self,
        offset: int,
        event: Any,
        *,
        timestamp_ms: int | None = None,
        size: int = 0,
        token: Any = None,
    ) -> Released:
        """Buffer one decoded change (a `cdc.envelope.ChangeEvent`); returns what became final.

        Raises DecodeError, before changing anything, if the event cannot be a bronze row (no
        time to bucket it by, unusable table name, columns named like provenance columns): the
        caller dead-letters the record. Raises the storage error, also before changing anything,
        if the open file had to be rotated first and could not be, or the table's last schema
        could not be read from the lake: the caller retries later.
        """
        self._check_open()
        if offset <= self._seen_through:
            return self._duplicate(offset, token)
        listed, intact = self._listed_file_at(offset)
        if intact:
            return self.skip_handled(offset, token)
        lost = listed  # its offsets are written again, in a file with its bounds
        # DecodeError if there is no time to bucket by
        event_ms = event_time_ms(event, timestamp_ms, self._previous_delete)
        bucket = self._bucket_of(event_ms)
        if event.table != self._table and not is_safe_table_name(event.table):
            raise DecodeError(f"table name {event.table!r} is not a plain <db>.<table>")
        self._validate_schema(event.row_schema)
        placement = self._place(event)  # storage error while resuming the table's schema

        released = Released()
        if self.state is WriterState.BUFFERING:
            reason = self._due or self._rotation_before(event, bucket, placement)
            if reason is None and _path_of(lost) != _path_of(self._rewriting):
                reason = RotationReason.BRONZE_BOUNDARY
            if reason is not None:
                released.extend(self._flush(reason))  # raises with nothing changed
        # Only now, with the previous version's file written, does the new version begin.
        self._begin_version(event.table, placement, offset)
        self._buffer(offset, event, bucket, event_ms, size, token, placement, lost)
        reason = self._rotation_after()
        if reason is not None:
            try:
                released.extend(self._flush(reason))
            except Exception as exc:  # noqa: BLE001 - the record is buffered: retry later
                self._due = reason
                log.warning(
                    "%s[%d]: flush (%s) failed, will retry: %s",
                    self.topic,
                    self.partition,
                    reason.value,
                    exc,
                )
        return released

    def pass_over(self, offset: int, token: Any = None) -> Released:
        """Mark a record as handled without writing it (dead letter, schema change, resume).

        Its token is released right away if nothing is buffered, else with the open file, so
        tokens are always released in offset order.
        """
        self._check_open()
        if offset <= self._seen_through:
            return self._duplicate(offset, token)
        self._seen_through = offset
        if self.state is WriterState.BUFFERING:
            self._tokens.append((offset, token))
            return Released()
        self._handled_through = offset
        return Released(tokens=[token])

    def skip_handled(self, offset: int, token: Any = None) -> Released:
        """Release a record bronze holds already (`is_handled`) without writing it.

        A file being buffered is flushed first (raising the storage error with nothing changed
        if that fails), so no file spans offsets another file holds.
        """
        self._check_open()
        if offset <= self._seen_through:
            return self._duplicate(offset, token)
        released = Released()
        if self.state is WriterState.BUFFERING:
            released.extend(self._flush(RotationReason.BRONZE_BOUNDARY))
        return released.extend(self.pass_over(offset, token))

    def tick(self) -> Released:
        """Rotate the open file if it is old enough or a failed rotation is due (timer).

        Raises the storage error if the flush fails; the rotation stays due.
        """
        if self.state is not WriterState.BUFFERING:
            return Released()
        reason = self._due
        if reason is None and self.age() >= self.flush_policy.seconds:
            reason = RotationReason.AGE
        if reason is None:
            return Released()
        try:
            return self._flush(reason)
        except Exception:
            self._due = reason
            raise

    def flush(self, reason: RotationReason) -> Released:
        """Rotate the open file now, if there is one."""
        self._check_open()
        if self.state is not WriterState.BUFFERING:
            return Released()
        return self._flush(reason)

    def close(self, reason: RotationReason) -> Released:
        """Flush what is buffered and stop accepting records (revocation, shutdown).

        If the flush fails the writer stays open and buffering, and the error propagates.
        """
        if self.state is WriterState.CLOSED:
            return Released()
        released = self._flush(reason) if self.state is WriterState.BUFFERING else Released()
        self.state = WriterState.CLOSED
        return released

    # -- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.state is WriterState.CLOSED:
            raise WriterClosedError(f"writer for {self.topic}[{self.partition}] is closed")

    def _listed_file_at(self, offset: int) -> tuple[ManifestEntry | None, bool]:
        """The listed file whose range holds `offset`, and whether it is intact.

        Only offsets up to `resume_after` can be listed; the newer ones cost nothing here.
        """
        if offset > self.resume_after:
            return None, False
        try:
            if self._bronze is None or offset < self._bronze.from_offset:
                self._bronze = PartitionFiles.load(
                    self.manifest, self.topic, self.partition, from_offset=offset
                )
            entry = self._bronze.file_at(offset)
            if entry is None:
                return None, False
            key = (entry.path, entry.bytes)
            intact = self._intact.get(key)
            if intact is None:
                intact = self._intact[key] = is_intact(self.storage, entry)
                if not intact:
                    log.warning(
                        "%s[%d]: bronze file %s (offsets %d..%d) is listed in the manifest but "
                        "missing or not the size it had; its offsets are written again",
                        self.topic,
                        self.partition,
                        entry.path,
                        entry.first_offset,
                        entry.last_offset,
                    )
        except OSError as exc:
            raise StorageUnavailableError(
                f"cannot tell whether bronze holds {self.topic}[{self.partition}]@{offset}: {exc}"
            ) from exc
        return entry, intact

    def _duplicate(self, offset: int, token: Any) -> Released:
        # Offered again (redelivery after a seek): already handled, or held in the open file.
        if self.state is WriterState.BUFFERING and offset > self._handled_through:
            self._tokens.append((self._tokens[-1][0], token))
            return Released()
        return Released(tokens=[token])

    def _bucket_of(self, epoch_ms: int) -> HourBucket:
        # Most records fall in the open file's hour: skip the datetime arithmetic for them.
        if self._bucket is not None and self._bucket_start_ms <= epoch_ms < (
            self._bucket_start_ms + _HOUR_MS
        ):
            return self._bucket
        return HourBucket.of_millis(epoch_ms)

    def _validate_schema(self, schema: pa.Schema) -> None:
        for known in self._valid_schemas:
            if known is schema:
                return
        bronze_schema(schema)  # raises DecodeError on a column-name clash
        self._valid_schemas = [schema, *self._valid_schemas[:7]]

    def _reset_file(self) -> None:
        self._rows: list[tuple[int, Any]] = []
        self._tokens: list[tuple[int, Any]] = []
        self._bytes = 0
        self._bucket: HourBucket | None = None
        self._schema: pa.Schema | None = None
        self._version = UNTRACKED
        self._table: str | None = None
        self._primary_key: tuple[str, ...] = ()
        self._only_tombstones = True
        self._first_row_at: float | None = None
        self._min_ts: int | None = None
        self._max_ts: int | None = None
        self._rewriting: ManifestEntry | None = None  # the lost file the open file writes again
        self._accounted_from: int | None = None  # see ManifestEntry.accounted_from

    def _rotation_before(
        self, event: Any, bucket: HourBucket, placement: _Placement
    ) -> RotationReason | None:
        """Why the open file cannot take `event`, or None if it can."""
        if bucket != self._bucket:
            return RotationReason.HOUR_BOUNDARY
        if event.table != self._table or placement.primary_key != self._primary_key:
            return RotationReason.SCHEMA_CHANGE
        assert self._schema is not None
        if placement.version == self._version and (
            placement.schema is self._schema or placement.schema.equals(self._schema)
        ):
            return None
        if (
            self._version == UNTRACKED
            and self._only_tombstones
            and event.op != TOMBSTONE
            and fits_within(self._schema, placement.schema)
        ):
            return None  # the file so far holds only keys: widen it to the full row
        return RotationReason.SCHEMA_CHANGE

    # -- schema versions ----------------------------------------------------------------------

    def _place(self, event: Any) -> _Placement:
        """The schema version and file schema of `event`'s row; changes nothing.

        A tombstone goes with the table's current schema when its key columns fit it, else into
        a key-only file that is not tracked. Any other row's schema is classified against the
        table's cumulative schema: the same shape keeps the version, anything else starts the
        next one (see `_begin_version`).
        """
        schema = event.row_schema
        cache_key = (id(schema), event.table)
        cached = self._placements.get(cache_key)
        if cached is not None and cached[0] is schema and cached[1] == event.primary_key:
            return cached[2]
        tracked = self._table_schema(event.table)
        key = tuple(event.primary_key)
        if event.op == TRUNCATE:
            # A TRUNCATE has no key (Kafka key null) and no row: it belongs to the table's
            # current version, not to a new one with an empty primary key.
            return self._truncate_placement(tracked, schema)
        if event.op == TOMBSTONE:
            if (
                tracked.schema is not None
                and key == tracked.primary_key
                and fits_within(schema, tracked.schema)
            ):
                placement = _Placement(tracked.version, tracked.schema, key)
            else:
                placement = _Placement(UNTRACKED, schema, key)
        elif tracked.schema is None:
            return _Placement(tracked.version + 1, schema, key)
        elif schema is tracked.schema and key == tracked.primary_key and tracked.version:
            placement = _Placement(tracked.version, tracked.schema, tracked.primary_key)
        else:
            change = classify(tracked.schema, schema, tracked.primary_key, key)
            if change.kind is not ChangeKind.SAME or tracked.version == UNTRACKED:
                # A new version (also for the same shape under version 0: files written before
                # versions were tracked). Not cached: it is current only once it has begun.
                return _Placement(tracked.version + 1, change.schema, key, change)
            placement = _Placement(tracked.version, tracked.schema, tracked.primary_key)
        if len(self._placements) >= 64:
            self._placements.clear()
        self._placements[cache_key] = (schema, event.primary_key, placement)
        return placement

    @staticmethod
    def _truncate_placement(tracked: TableSchema, schema: pa.Schema) -> _Placement:
        """Where a TRUNCATE goes: the current version if the table's columns fit it (all of
        them are null), else, before any row of the table was seen, an untracked file."""
        if tracked.schema is not None and fits_within(schema, tracked.schema):
            return _Placement(tracked.version, tracked.schema, tracked.primary_key)
        return _Placement(UNTRACKED, schema, tracked.primary_key)

    def _begin_version(self, table: str, placement: _Placement, offset: int) -> None:
        """Make `placement`'s version the table's current one if it is new, and say why."""
        tracked = self._tables[table]
        if placement.version == UNTRACKED or placement.version == tracked.version:
            return
        self._tables[table] = TableSchema(
            placement.version, placement.schema, placement.primary_key
        )
        self._placements.clear()
        where = f"{self.topic}[{self.partition}]@{offset}"
        change = placement.change
        if change is None or change.kind is ChangeKind.SAME:
            log.info(
                "%s: %s schema version %d (%d columns)",
                where,
                table,
                placement.version,
                len(placement.schema),
            )
        elif change.kind is ChangeKind.ACCEPTED:
            log.info(
                "%s: %s schema version %d -> %d, accepted (new file, widened schema): %s",
                where,
                table,
                tracked.version,
                placement.version,
                change.describe(),
            )
            for column in change.changes:
                if column.change in ("added", "added_not_null"):
                    # ALTER TABLE fills existing rows with the default without a binlog event;
                    # readers and silver give them the default recorded in the schema.
                    default = placement.schema.field(column.column).metadata or {}
                    log.info(
                        "%s: %s column %r added; rows that existed before hold its default %s",
                        where,
                        table,
                        column.column,
                        default.get(DEFAULT_KEY, b"NULL").decode(errors="replace"),
                    )
        else:
            # Readers must not get these records cast to the old types: they are written as
            # they are, under their own version, and the bronze asset check fails on it.
            for broken in change.breaking:
                log.error(
                    "%s: BREAKING schema change of %s, schema version %d -> %d: %s (column %s, "
                    "old type %s, new type %s). Nothing is cast: the table's new records are "
                    "written with their own types under schema version %d.",
                    where,
                    table,
                    tracked.version,
                    placement.version,
                    broken,
                    broken.column,
                    broken.old_type,
                    broken.new_type,
                    placement.version,
                )

    def _table_schema(self, table: str) -> TableSchema:
        """The table's tracked schema; on first use resumed from its last manifest entry."""
        tracked = self._tables.get(table)
        if tracked is None:
            tracked = self._resume_table_schema(table)
            self._tables[table] = tracked
        return tracked

    def _resume_table_schema(self, table: str) -> TableSchema:
        """Version and cumulative schema of the newest file of `table` the manifest lists.

        The manifest holds the version; the schema is read from the Parquet footer of the newest
        file of that version still in the lake (a file of the version has the version's
        cumulative schema, dropped columns included), so a lost newest file does not end the
        history while an older file of its version remains.
        """
        try:
            entries = self.manifest.entries_for(table)
        except OSError as exc:
            raise StorageUnavailableError(f"cannot read the manifest: {exc}") from exc
        if not entries:
            return TableSchema(UNTRACKED, None, ())
        # The highest version; among equals the last appended. Files of version 0 were written
        # before versions were tracked: the newest one still tells the table's last shape.
        last = max(enumerate(entries), key=lambda item: (item[1].schema_version, item[0]))[1]
        same_version = [e for e in reversed(entries) if e.schema_version == last.schema_version]
        for candidate in same_version:
            try:
                file_schema = pq.read_schema(
                    self.storage.full_path(candidate.path), filesystem=self.storage.filesystem
                )
            except (FileNotFoundError, pa.ArrowInvalid):  # lost, or cut short: a replay rewrites it
                continue
            except OSError as exc:
                raise StorageUnavailableError(f"cannot read {candidate.path}: {exc}") from exc
            return TableSchema(
                last.schema_version, row_schema_of(file_schema), tuple(last.primary_key)
            )
        # Nothing to compare with: the next row starts a new version (never reuses one).
        log.error(
            "%s: bronze file %s is listed in the manifest but missing or unreadable (and so is "
            "every other file of schema version %d); %s's schema history restarts at version %d",
            self.topic,
            last.path,
            last.schema_version,
            table,
            last.schema_version + 1,
        )
        return TableSchema(last.schema_version, None, tuple(last.primary_key))

    def _buffer(
        self,
        offset: int,
        event: Any,
        bucket: HourBucket,
        event_ms: int,
        size: int,
        token: Any,
        placement: _Placement,
        rewriting: ManifestEntry | None,
    ) -> None:
        if self.state is WriterState.EMPTY:
            self._accounted_from = self._accounted_start(offset, rewriting)
            self._rewriting = rewriting
            self._bucket = bucket
            self._bucket_start_ms = event_ms - event_ms % _HOUR_MS
            self._schema = placement.schema
            self._version = placement.version
            self._table = event.table
            self._primary_key = placement.primary_key
            self._first_row_at = self.clock()
            self.state = WriterState.BUFFERING
        elif self._only_tombstones and event.op != TOMBSTONE and self._version == UNTRACKED:
            # widened to the full row (see _rotation_before)
            self._schema = placement.schema
            self._version = placement.version
        if event.op != TOMBSTONE:
            self._only_tombstones = False
        self._rows.append((offset, event))
        self._previous_delete = PreviousDelete(key_of(event), event_ms) if event.op == "d" else None
        self._tokens.append((offset, token))
        self._seen_through = offset
        self._bytes += size
        if event.source is not None:
            ts = event.source.ts_ms
            self._min_ts = ts if self._min_ts is None else min(self._min_ts, ts)
            self._max_ts = ts if self._max_ts is None else max(self._max_ts, ts)

    def _accounted_start(self, offset: int, rewriting: ManifestEntry | None) -> int | None:
        """Where a file whose first row is at `offset` starts accounting for offsets.

        Kafka Connect writes with transactions (exactly-once source): each commit takes an
        offset for its marker, and records of an aborted transaction are never delivered to a
        read_committed reader. So offsets between the last one this writer knows handled (seen,
        or in bronze when it resumed: the consumer starts at most one past the manifest's last
        offset, since it commits only what is durable) and `offset` held nothing to write; the
        file accounts for them, and the continuity check sees no hole. A consumer group moved
        forward by hand (skipping records) would hide its skip here the same way.
        """
        if rewriting is not None and rewriting.first_offset == offset:
            return rewriting.accounted_from  # restoring a lost file as it was
        known_through = max(self._seen_through, self.resume_after)
        if 0 <= known_through < offset - 1:
            return known_through + 1
        return None

    def _rotation_after(self) -> RotationReason | None:
        if len(self._rows) >= self.flush_policy.rows:
            return RotationReason.ROWS
        if self._rewriting is not None and self._rows[-1][0] >= self._rewriting.last_offset:
            return RotationReason.BRONZE_BOUNDARY
        if self._bytes >= self.flush_policy.bytes:
            return RotationReason.BYTES
        if self.age() >= self.flush_policy.seconds:
            return RotationReason.AGE
        return None

    def _flush(self, reason: RotationReason) -> Released:
        """Write the open file, record it in the manifest, then release its tokens."""
        assert self.state is WriterState.BUFFERING and self._rows
        assert self._table is not None and self._bucket is not None and self._schema is not None
        self.state = WriterState.FLUSHING
        try:
            entries, in_bronze_through = self._write_file(reason)
        except BaseException:
            self.state = WriterState.BUFFERING
            raise
        released = Released(tokens=[token for _, token in self._tokens], files=entries)
        self._handled_through = self._tokens[-1][0]
        # Offsets another writer put in bronze meanwhile, even past ours, are looked up from now
        # on instead of being buffered and dropped at the next flush.
        self.resume_after = max(self.resume_after, in_bronze_through)
        self._due = None
        self._reset_file()
        self.state = WriterState.EMPTY
        for entry in entries:
            log.debug(
                "%s[%d]: wrote %d rows @%d..%d to %s (%s)",
                self.topic,
                self.partition,
                entry.rows,
                entry.first_offset,
                entry.last_offset,
                entry.path,
                reason.value,
            )
        return released

    def _write_file(self, reason: RotationReason) -> tuple[list[ManifestEntry], int]:
        """Write the open file and append its entry, both under the manifest's writer lock.

        Returns the entries of the files written (none if nothing was left to write) and the
        partition's highest offset in bronze before them. Buffered rows held by an intact listed
        file were put in bronze by another writer meanwhile: this partition's new owner while
        this worker had lost it without knowing (a stall longer than the session timeout), or
        such a stalled worker before the new owner flushed. They are dropped, not written twice;
        the rows left are written as one file per run between such files, each named after its
        first offset. An append that raised but landed is seen here by the retry, which then
        writes nothing. Rows of a lost file (listed, not intact) are not dropped: that is a
        replay writing them again.
        """
        with self.manifest.exclusive() as last_offsets:
            in_bronze = last_offsets.get((self.topic, self.partition), -1)
            if self._rows[0][0] > in_bronze:  # the usual case: nothing listed to compare with
                return [self._write_run(self._rows, reason)], in_bronze
            runs = self._runs_not_in_bronze()
            kept = sum(len(run) for run in runs)
            if kept < len(self._rows):
                log.warning(
                    "%s[%d]: %d of the buffered offsets %d..%d are in bronze already (another "
                    "worker wrote them); writing only the %d others",
                    self.topic,
                    self.partition,
                    len(self._rows) - kept,
                    self._rows[0][0],
                    self._rows[-1][0],
                    kept,
                )
            entries = [self._write_run(run, reason) for run in runs]
        return entries, in_bronze

    def _runs_not_in_bronze(self) -> list[list[tuple[int, Any]]]:
        """The buffered rows no intact listed file holds, split where such a file lies between.

        Files are checked afresh (not from the cache): this runs under the manifest's lock,
        where what it finds stays true until the entries are appended.
        """
        first, last = self._rows[0][0], self._rows[-1][0]
        if self._bronze is None or first < self._bronze.from_offset:
            self._bronze = PartitionFiles(self.topic, self.partition, from_offset=first)
        self._bronze.catch_up(self.manifest)
        intact = [
            entry
            for entry in self._bronze.files_between(first, last)
            if is_intact(self.storage, entry)
        ]
        held = [run for entry in intact for run in entry.ranges()]
        runs: list[list[tuple[int, Any]]] = []
        run: list[tuple[int, Any]] = []
        for row in self._rows:
            offset = row[0]
            if any(a <= offset <= b for a, b in held):
                if run:
                    runs.append(run)
                    run = []
                continue
            if run and any(run[-1][0] < a and b < offset for a, b in held):
                runs.append(run)
                run = []
            run.append(row)
        if run:
            runs.append(run)
        return runs

    def _write_run(self, rows: list[tuple[int, Any]], reason: RotationReason) -> ManifestEntry:
        """Write `rows` (of the open file) as one file and append its entry, under the lock.

        A file that restores a lost one exactly (same name, offsets, rows, bytes and schema as
        the path's listed entry) is not listed again: readers already count it once.
        """
        assert self._table is not None and self._bucket is not None and self._schema is not None
        first, last = rows[0][0], rows[-1][0]
        path = bronze_file_path(self._table, self._bucket, self.topic, self.partition, first)
        data = encode_bronze_file(
            self.topic,
            self.partition,
            rows,
            self._schema,
            table=self._table,
            primary_key=self._primary_key,
        )
        source_ts = [event.source.ts_ms for _, event in rows if event.source is not None]
        self.storage.write_atomic(path, data)
        entry = ManifestEntry(
            table=self._table,
            topic=self.topic,
            partition=self.partition,
            first_offset=first,
            last_offset=last,
            rows=len(rows),
            path=path,
            partition_key=self._bucket.partition_key,
            bytes=len(data),
            written_at=self.wall_clock(),  # after the file is durable
            rotation_reason=reason.value,
            primary_key=list(self._primary_key),
            min_source_ts_ms=min(source_ts) if source_ts else None,
            max_source_ts_ms=max(source_ts) if source_ts else None,
            schema_fingerprint=fingerprint(self._schema),
            schema_version=self._version,
            accounted_from=self._accounted_from if first == self._rows[0][0] else None,
        )
        listed = self._bronze.by_path.get(path) if self._bronze is not None else None
        lost = self._rewriting
        if (
            lost is not None
            and lost.path != path
            and self._bronze is not None
            and self._bronze.by_path.get(lost.path) == lost
        ):
            # The lost file's offsets come back under another name (a compacted file's name
            # carries its last offset too; a record of it may now go to another hour or to the
            # dead letters): its entry must stop listing a file that is gone.
            entry = dataclasses.replace(entry, supersedes=[lost.path])
            log.info(
                "%s[%d]: lost bronze file %s (offsets %d..%d) is written again from %s on; the "
                "new entry supersedes it",
                self.topic,
                self.partition,
                lost.path,
                lost.first_offset,
                lost.last_offset,
                path,
            )
        if listed is not None and _same_file(listed, entry):
            log.info(
                "%s[%d]: restored lost bronze file %s (offsets %d..%d) as its manifest entry "
                "describes it",
                self.topic,
                self.partition,
                path,
                first,
                last,
            )
            return listed
        if listed is not None:
            log.info(
                "%s[%d]: rewrote lost bronze file %s as offsets %d..%d; its new entry supersedes "
                "the one for offsets %d..%d",
                self.topic,
                self.partition,
                path,
                first,
                last,
                listed.first_offset,
                listed.last_offset,
            )
        self.manifest.append(entry)
        if self._bronze is not None:  # later runs of this flush see it, before any catch-up
            self._bronze.add([entry])
        return entry


def _path_of(entry: ManifestEntry | None) -> str | None:
    return None if entry is None else entry.path


def _same_file(listed: ManifestEntry, written: ManifestEntry) -> bool:
    """Whether `written` describes the same file as `listed` (when and why aside)."""
    stamp = {"written_at": 0.0, "rotation_reason": ""}
    return dataclasses.replace(listed, **stamp) == dataclasses.replace(written, **stamp)

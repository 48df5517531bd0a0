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

Schema versions (`binlake.bronze.schema_versions.SchemaVersionTracker`): a row whose table's
schema changed (accepted or breaking) rotates the file and starts a new schema version, so a file
holds one schema.

Offsets at or below `resume_after` (the manifest's last offset for the partition) may be in
bronze already (`binlake.bronze.lost_files.ListedFiles`). An offset held by an intact file is
released at once without being written (`is_handled`, `skip_handled`), and a file being buffered
is closed before it, so no file spans offsets another file holds. An offset of a lost file is
written again, in a file that ends where the lost one did, so that it is restored in place.

Records that are deliberately not written (dead letters, schema-change records) are
`pass_over`-ed: their tokens are held behind any buffered rows and released in offset order.

Nothing here sleeps or reads the wall clock for decisions: `clock` (monotonic seconds) drives the
age rotation and `wall_clock` only stamps `ManifestEntry.written_at`, both injectable for tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import pyarrow as pa

from binlake.bronze.data_files import write_unlisted
from binlake.bronze.layout import HourBucket, bronze_file_path, is_safe_table_name
from binlake.bronze.lost_files import ListedFiles
from binlake.bronze.manifest import Manifest, ManifestEntry, ManifestState
from binlake.bronze.parquet_format import bronze_schema, build_table, to_parquet_bytes
from binlake.bronze.partitioner import TOMBSTONE, PreviousDelete, event_time_ms, key_of
from binlake.bronze.schema_drift import fingerprint, fits_within
from binlake.bronze.schema_versions import (
    UNTRACKED,
    Placement,
    SchemaVersionTracker,
    TableSchema,
)
from binlake.errors import DecodeError
from binlake.storage import LakeStorage
from cdc.envelope import ChangeEvent
from streams.flush_policy import FlushPolicy

log = logging.getLogger(__name__)

_HOUR_MS = 3_600_000


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
        self._listed = ListedFiles(topic, partition, storage=storage, manifest=manifest)
        self._due: RotationReason | None = None  # a rotation that failed and must be retried
        self._valid_schemas: list[pa.Schema] = []  # recently checked row schemas (identity)
        self._bucket_start_ms = 0
        self._previous_delete: PreviousDelete | None = None  # for its tombstone's hour
        self._versions = SchemaVersionTracker(topic, partition, storage=storage, manifest=manifest)
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
        return self._versions.table_schema(table)

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
        event: ChangeEvent,
        *,
        timestamp_ms: int | None = None,
        size: int = 0,
        token: Any = None,
    ) -> Released:
        """Buffer one decoded change; returns what became final.

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
        placement = self._versions.place(event)  # storage error resuming the table's schema

        released = Released()
        if self.state is WriterState.BUFFERING:
            reason = self._due or self._rotation_before(event, bucket, placement)
            if reason is None and _path_of(lost) != _path_of(self._rewriting):
                reason = RotationReason.BRONZE_BOUNDARY
            if reason is not None:
                released.extend(self._flush(reason))  # raises with nothing changed
        # Only now, with the previous version's file written, does the new version begin.
        self._versions.begin(event.table, placement, offset)
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
        return self._listed.file_at(offset)

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
        self._rows: list[tuple[int, ChangeEvent]] = []
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
        self, event: ChangeEvent, bucket: HourBucket, placement: Placement
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

    def _buffer(
        self,
        offset: int,
        event: ChangeEvent,
        bucket: HourBucket,
        event_ms: int,
        size: int,
        token: Any,
        placement: Placement,
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
        """Write the open file and commit its entry to the manifest.

        Returns the entries of the files written (none if nothing was left to write) and the
        partition's highest offset in bronze before them. The decision is the commit's plan
        (`Manifest.commit`): made from the manifest as of its last commit, and made again if
        another writer commits first. Buffered rows held by an intact listed file were put in
        bronze by another writer meanwhile: this partition's new owner while this worker had
        lost it without knowing (a stall longer than the session timeout), or such a stalled
        worker before the new owner flushed. They are dropped, not written twice; the rows left
        are written as one file per run between such files, each named after its first offset.
        A commit that raised but landed is seen by the retry, which then writes nothing. Rows of
        a lost file (listed, not intact) are not dropped: that is a replay writing them again.
        """
        outcome: list[tuple[ManifestEntry, bool]] = []
        in_bronze = -1
        # Files written by an earlier attempt of this plan, by offsets: a commit lost to any
        # other writer's (of any partition) plans again, and the same run is not written again
        # (on an object store every write is a new object: an orphan per lost race).
        written: dict[tuple[int, int], ManifestEntry] = {}

        def plan(state: ManifestState) -> list[ManifestEntry]:
            nonlocal in_bronze
            in_bronze = state.high_water.get((self.topic, self.partition), -1)
            if self._rows[0][0] > in_bronze:  # the usual case: nothing listed to compare with
                runs = [self._rows]
            else:
                runs = self._listed.runs_not_in_bronze(self._rows)
                kept = sum(len(run) for run in runs)
                if kept < len(self._rows):
                    log.warning(
                        "%s[%d]: %d of the buffered offsets %d..%d are in bronze already "
                        "(another worker wrote them); writing only the %d others",
                        self.topic,
                        self.partition,
                        len(self._rows) - kept,
                        self._rows[0][0],
                        self._rows[-1][0],
                        kept,
                    )
            outcome.clear()
            for run in runs:
                planned = [e for e, new in outcome if new]
                outcome.append(self._write_run(run, reason, planned, written))
            return [entry for entry, new in outcome if new]

        self.manifest.commit(plan)
        return [entry for entry, _ in outcome], in_bronze

    def _write_run(
        self,
        rows: list[tuple[int, ChangeEvent]],
        reason: RotationReason,
        planned: list[ManifestEntry],
        written: dict[tuple[int, int], ManifestEntry],
    ) -> tuple[ManifestEntry, bool]:
        """Write `rows` (of the open file) as one file; returns the entry that lists it and
        whether that entry is new (`ListedFiles.record`: a lost file restored exactly is not
        listed twice). `planned`: the new entries of this flush's earlier runs; `written`: the
        files this flush wrote already, by first and last offset (reused, not written again)."""
        assert self._table is not None and self._bucket is not None and self._schema is not None
        first, last = rows[0][0], rows[-1][0]
        if (first, last) not in written:
            written[(first, last)] = self._write_rows(rows, reason)
        return self._listed.record(written[(first, last)], self._rewriting, planned)

    def _write_rows(
        self, rows: list[tuple[int, ChangeEvent]], reason: RotationReason
    ) -> ManifestEntry:
        """Write `rows` as one bronze file, not listed yet; the entry that would list it."""
        assert self._table is not None and self._bucket is not None and self._schema is not None
        first, last = rows[0][0], rows[-1][0]
        path = bronze_file_path(self._table, self._bucket, self.topic, self.partition, first)
        file_table = build_table(
            self.topic,
            self.partition,
            rows,
            self._schema,
            table=self._table,
            primary_key=self._primary_key,
        )
        data = to_parquet_bytes(file_table)
        source_ts = [event.source.ts_ms for _, event in rows if event.source is not None]
        restoring = self._rewriting is not None and self._rewriting.path == path
        path = write_unlisted(self.storage, path, data, restoring=restoring)
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
        return entry


def _path_of(entry: ManifestEntry | None) -> str | None:
    return None if entry is None else entry.path

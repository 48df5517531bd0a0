"""One bronze writer per Kafka topic-partition: an explicit state machine.

Modelled on the Kafka Connect S3 sink's TopicPartitionWriter. A writer buffers the rows of one
topic-partition and turns them into bronze files. A file holds consecutive offsets of one
topic-partition, one hour bucket, one table and one row schema, so a record for another hour or
another schema rotates the current file before it is buffered. A file is also rotated after
`flush_rows` rows, after about `flush_bytes` bytes of records, `flush_seconds` after its first
row was buffered (checked on every record and by `tick()`, which a timer calls), and when the
partition is revoked or the worker shuts down.

States::

    EMPTY --add--> BUFFERING --rotate--> FLUSHING --file + manifest durable--> EMPTY
                                            \\--error--> BUFFERING (rotation stays due, retried)
    EMPTY/BUFFERING --close--> (flush) --> CLOSED

Flushing writes the Parquet file atomically at `bronze_file_path(..., first_offset)`, then appends
its `ManifestEntry`, and only then releases the records' tokens (the caller acks them, which lets
the consumer commit their offsets). A retried flush produces the same file under the same name.

Offsets at or below `resume_after` (the manifest's last offset for the partition) are already in
bronze: they are released at once without being written, whatever the committed consumer offset
said. Records that are deliberately not written (dead letters, schema-change records) are
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

from binlake.bronze_layout import HourBucket, bronze_file_path, is_safe_table_name
from binlake.errors import DecodeError
from binlake.manifest import Manifest, ManifestEntry
from binlake.storage import LakeStorage
from streams.parquet_format import bronze_schema, encode_bronze_file
from streams.partitioner import TOMBSTONE, PreviousDelete, event_time_ms, key_of

log = logging.getLogger(__name__)

DEFAULT_FLUSH_BYTES = 64 * 1024 * 1024
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


def _fields_within(small: pa.Schema, big: pa.Schema) -> bool:
    """True if every column of `small` is in `big` with the same type."""
    for column in small:
        index = big.get_field_index(column.name)
        if index < 0 or not big.field(index).type.equals(column.type):
            return False
    return True


class PartitionWriter:
    """Buffers one topic-partition's changes and writes them as bronze files."""

    def __init__(
        self,
        topic: str,
        partition: int,
        *,
        storage: LakeStorage,
        manifest: Manifest,
        flush_rows: int,
        flush_seconds: float,
        flush_bytes: int = DEFAULT_FLUSH_BYTES,
        resume_after: int = -1,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        if flush_rows < 1 or flush_seconds <= 0 or flush_bytes < 1:
            raise ValueError("flush_rows, flush_seconds and flush_bytes must be positive")
        self.topic = topic
        self.partition = partition
        self.storage = storage
        self.manifest = manifest
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.flush_bytes = flush_bytes
        self.resume_after = resume_after
        self.clock = clock
        self.wall_clock = wall_clock
        self.state = WriterState.EMPTY
        # Every offset <= this one is durable in bronze or deliberately passed over.
        self._handled_through = resume_after
        # Highest offset this writer has been given (buffered, passed over or handled).
        self._seen_through = resume_after
        self._due: RotationReason | None = None  # a rotation that failed and must be retried
        self._valid_schemas: list[pa.Schema] = []  # recently checked row schemas (identity)
        self._bucket_start_ms = 0
        self._previous_delete: PreviousDelete | None = None  # for its tombstone's hour
        self._append_uncertain = False  # a manifest append raised: it may or may not be there
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
    def rotation_due(self) -> RotationReason | None:
        return self._due

    def age(self) -> float:
        """Seconds since the open file's first row was buffered (0 when nothing is)."""
        if self._first_row_at is None:
            return 0.0
        return self.clock() - self._first_row_at

    def is_handled(self, offset: int) -> bool:
        """True if `offset` is already in bronze (or passed over): it must not be written again."""
        return offset <= self._handled_through

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
        if the open file had to be rotated first and could not be: the caller retries later.
        """
        self._check_open()
        if offset <= self._seen_through:
            return self._duplicate(offset, token)
        # DecodeError if there is no time to bucket by
        event_ms = event_time_ms(event, timestamp_ms, self._previous_delete)
        bucket = self._bucket_of(event_ms)
        if event.table != self._table and not is_safe_table_name(event.table):
            raise DecodeError(f"table name {event.table!r} is not a plain <db>.<table>")
        self._validate_schema(event.row_schema)

        released = Released()
        if self.state is WriterState.BUFFERING:
            reason = self._due or self._rotation_before(event, bucket)
            if reason is not None:
                released.extend(self._flush(reason))  # raises with nothing changed
        self._buffer(offset, event, bucket, event_ms, size, token)
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

    def tick(self) -> Released:
        """Rotate the open file if it is old enough or a failed rotation is due (timer).

        Raises the storage error if the flush fails; the rotation stays due.
        """
        if self.state is not WriterState.BUFFERING:
            return Released()
        reason = self._due
        if reason is None and self.age() >= self.flush_seconds:
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
        self._table: str | None = None
        self._primary_key: tuple[str, ...] = ()
        self._only_tombstones = True
        self._first_row_at: float | None = None
        self._min_ts: int | None = None
        self._max_ts: int | None = None

    def _rotation_before(self, event: Any, bucket: HourBucket) -> RotationReason | None:
        """Why the open file cannot take `event`, or None if it can."""
        if bucket != self._bucket:
            return RotationReason.HOUR_BOUNDARY
        if event.table != self._table or tuple(event.primary_key) != self._primary_key:
            return RotationReason.SCHEMA_CHANGE
        schema = event.row_schema
        assert self._schema is not None
        if schema is self._schema or schema.equals(self._schema):
            return None
        if event.op == TOMBSTONE and _fields_within(schema, self._schema):
            return None  # key columns only; the others are null
        if self._only_tombstones and event.op != TOMBSTONE and _fields_within(self._schema, schema):
            return None  # the file so far holds only keys: widen it to the full row
        return RotationReason.SCHEMA_CHANGE

    def _buffer(
        self, offset: int, event: Any, bucket: HourBucket, event_ms: int, size: int, token: Any
    ) -> None:
        if self.state is WriterState.EMPTY:
            self._bucket = bucket
            self._bucket_start_ms = event_ms - event_ms % _HOUR_MS
            self._schema = event.row_schema
            self._table = event.table
            self._primary_key = tuple(event.primary_key)
            self._first_row_at = self.clock()
            self.state = WriterState.BUFFERING
        elif self._only_tombstones and event.op != TOMBSTONE:
            self._schema = event.row_schema  # widened (see _rotation_before)
        if event.op != TOMBSTONE:
            self._only_tombstones = False
        self._rows.append((offset, event))
        self._previous_delete = (
            PreviousDelete(key_of(event), event_ms)
            if event.op == "d" and event.primary_key
            else None
        )
        self._tokens.append((offset, token))
        self._seen_through = offset
        self._bytes += size
        if event.source is not None:
            ts = event.source.ts_ms
            self._min_ts = ts if self._min_ts is None else min(self._min_ts, ts)
            self._max_ts = ts if self._max_ts is None else max(self._max_ts, ts)

    def _rotation_after(self) -> RotationReason | None:
        if len(self._rows) >= self.flush_rows:
            return RotationReason.ROWS
        if self._bytes >= self.flush_bytes:
            return RotationReason.BYTES
        if self.age() >= self.flush_seconds:
            return RotationReason.AGE
        return None

    def _flush(self, reason: RotationReason) -> Released:
        """Write the open file, record it in the manifest, then release its tokens."""
        assert self.state is WriterState.BUFFERING and self._rows
        assert self._table is not None and self._bucket is not None and self._schema is not None
        self.state = WriterState.FLUSHING
        try:
            entry = self._write_file(reason)
        except BaseException:
            self.state = WriterState.BUFFERING
            raise
        released = Released(tokens=[token for _, token in self._tokens], files=[entry])
        self._handled_through = self._tokens[-1][0]
        self._due = None
        self._reset_file()
        self.state = WriterState.EMPTY
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

    def _write_file(self, reason: RotationReason) -> ManifestEntry:
        assert self._table is not None and self._bucket is not None and self._schema is not None
        rows = self._rows
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
            min_source_ts_ms=self._min_ts,
            max_source_ts_ms=self._max_ts,
        )
        if self._append_uncertain and self._already_recorded(entry):
            log.info("%s: manifest entry survived a failed append; not appending again", path)
        else:
            self._append_uncertain = True
            self.manifest.append(entry)
        self._append_uncertain = False
        return entry

    def _already_recorded(self, entry: ManifestEntry) -> bool:
        return any(
            e.path == entry.path and e.last_offset == entry.last_offset and e.rows == entry.rows
            for e in self.manifest.entries()
        )

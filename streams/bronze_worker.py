"""The bronze worker's logic, free of Faust: Kafka records in, bronze files and acks out.

`BronzeWorker` owns one `PartitionWriter` per assigned topic-partition, decodes each record,
dead-letters the ones that cannot be decoded, skips schema-change records and records already
in the manifest, and returns the tokens (Faust events) that may now be acked. `streams.app`
feeds it from a Faust agent; tests feed it directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from binlake.errors import DecodeError, FinalError, RetriableError
from binlake.manifest import Manifest
from binlake.settings import Settings
from binlake.storage import LakeStorage
from cdc.envelope import SchemaChangeRecord, decode_change
from streams.dead_letter import DeadLetters
from streams.partition_writer import (
    DEFAULT_FLUSH_BYTES,
    PartitionWriter,
    Released,
    RotationReason,
)

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


class PartitionFailedError(FinalError):
    """A partition whose record failed unexpectedly accepts no more records until revoked."""


Decoder = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One consumed record as the bronze worker sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    token: Any = None  # handed back in `Released.tokens` once the record is handled

    @property
    def size(self) -> int:
        return len(self.key or b"") + len(self.value or b"")


@dataclass
class WorkerStats:
    records: int = 0
    rows: int = 0
    files: int = 0
    dead_letters: int = 0
    schema_changes: int = 0
    already_in_bronze: int = 0


class BronzeWorker:
    """Routes records to per-partition writers; see the module docstring."""

    def __init__(
        self,
        storage: LakeStorage,
        *,
        topic_prefix: str,
        flush_rows: int,
        flush_seconds: float,
        flush_bytes: int = DEFAULT_FLUSH_BYTES,
        manifest: Manifest | None = None,
        dead_letters: DeadLetters | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        decode: Decoder = decode_change,
    ):
        self.storage = storage
        self.topic_prefix = topic_prefix
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.flush_bytes = flush_bytes
        self.manifest = manifest or Manifest(storage)
        self.dead_letters = dead_letters or DeadLetters(storage, wall_clock=wall_clock)
        self.clock = clock
        self.wall_clock = wall_clock
        self.decode = decode
        self.writers: dict[TopicPartition, PartitionWriter] = {}
        self.stats = WorkerStats()
        # Highest manifest offset per partition, read incrementally from `_manifest_cursor`.
        self._manifest_offsets: dict[TopicPartition, int] = {}
        self._manifest_cursor = 0
        self._manifest_stale = True
        self.failed: dict[TopicPartition, tuple[int, BaseException]] = {}
        self._tick_failing: set[TopicPartition] = set()

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> BronzeWorker:
        return cls(
            LakeStorage.from_url(settings.lake_url),
            topic_prefix=settings.kafka.topic_prefix,
            flush_rows=settings.bronze.flush_rows,
            flush_seconds=settings.bronze.flush_seconds,
            flush_bytes=settings.bronze.flush_bytes,
            **kwargs,
        )

    # -- records ------------------------------------------------------------------------------

    def handle(self, record: KafkaRecord) -> Released:
        """Handle one record; returns the tokens that may be acked and any files written.

        Raises `RetriableError` (storage) with nothing changed: call again with the same record
        later. Any other exception fails the record's partition: later records of it raise
        `PartitionFailedError` until the partition is revoked, so none is written past the one
        that failed (which the manifest-based resume would then skip for good). What was
        buffered before it can still be flushed.
        """
        tp = (record.topic, record.partition)
        failure = self.failed.get(tp)
        if failure is not None:
            raise PartitionFailedError(
                f"{tp[0]}[{tp[1]}] failed at offset {failure[0]}: {failure[1]!r}"
            ) from failure[1]
        try:
            return self._handle(record)
        except RetriableError:
            raise
        except Exception as exc:
            self.failed[tp] = (record.offset, exc)
            raise

    def _handle(self, record: KafkaRecord) -> Released:
        self.stats.records += 1
        writer = self.writer_for(record.topic, record.partition)
        if writer.is_handled(record.offset):
            self.stats.already_in_bronze += 1
            return writer.pass_over(record.offset, record.token)
        try:
            event = self.decode(
                record.key, record.value, topic=record.topic, topic_prefix=self.topic_prefix
            )
        except SchemaChangeRecord:
            log.debug("%s[%d]@%d: schema-change record, skipped", *_where(record))
            self.stats.schema_changes += 1
            return writer.pass_over(record.offset, record.token)
        except DecodeError as exc:
            return self._dead_letter(writer, record, exc.reason, exc)
        except Exception as exc:  # a decoder bug must not stop the stream
            log.exception("%s[%d]@%d: decoder failed unexpectedly", *_where(record))
            return self._dead_letter(writer, record, f"decoder error: {exc!r}", exc)
        try:
            released = writer.add(
                record.offset,
                event,
                timestamp_ms=record.timestamp_ms,
                size=record.size,
                token=record.token,
            )
        except DecodeError as exc:  # raised before the writer changed anything
            return self._dead_letter(writer, record, exc.reason, exc)
        self.stats.rows += 1
        return self._count(released)

    def tick(self) -> Released:
        """Rotate files that are old enough (called by a timer).

        Storage errors are logged (once per outage) and retried on the next tick; any other
        error propagates.
        """
        released = Released()
        for tp, writer in list(self.writers.items()):
            try:
                released.extend(writer.tick())
            except RetriableError as exc:
                if tp not in self._tick_failing:
                    log.warning("%s[%d]: age rotation failed, will retry: %s", *tp, exc)
                self._tick_failing.add(tp)
                continue
            if tp in self._tick_failing:
                self._tick_failing.discard(tp)
                log.info("%s[%d]: age rotation works again", *tp)
        return self._count(released)

    # -- assignment ---------------------------------------------------------------------------

    def writer_for(self, topic: str, partition: int) -> PartitionWriter:
        writer = self.writers.get((topic, partition))
        if writer is None:
            if self._manifest_stale:
                self._read_manifest()
            writer = PartitionWriter(
                topic,
                partition,
                storage=self.storage,
                manifest=self.manifest,
                flush_rows=self.flush_rows,
                flush_seconds=self.flush_seconds,
                flush_bytes=self.flush_bytes,
                resume_after=self._manifest_offsets.get((topic, partition), -1),
                clock=self.clock,
                wall_clock=self.wall_clock,
            )
            self.writers[(topic, partition)] = writer
        return writer

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions were assigned: writers created from now on re-read the manifest."""
        del partitions  # writers are created lazily, on their first record
        self._manifest_stale = True

    def revoke(self, partitions: Iterable[TopicPartition]) -> Released:
        """Flush and drop the writers of revoked partitions.

        A writer whose flush fails is dropped anyway: its records were never acked, so the
        partition's next owner reads them again from the last committed offset.
        """
        partitions = list(partitions)
        released = self._close([tp for tp in partitions if tp in self.writers], _REVOKED)
        for tp in partitions:
            # Its next owner (maybe this worker again) resumes from the committed offset, which
            # is never past the record that failed: that record is read again.
            self.failed.pop(tp, None)
        self._manifest_stale = True
        return released

    def close(self) -> Released:
        """Flush and drop every writer (shutdown)."""
        return self._close(list(self.writers), RotationReason.SHUTDOWN)

    # -- internals ----------------------------------------------------------------------------

    def _close(self, partitions: list[TopicPartition], reason: RotationReason) -> Released:
        released = Released()
        for tp in partitions:
            writer = self.writers.pop(tp)
            try:
                released.extend(writer.close(reason))
            except Exception as exc:  # noqa: BLE001 - see revoke()
                log.error(
                    "%s[%d]: could not flush %d buffered rows on %s (they will be read "
                    "again from the committed offset): %s",
                    tp[0],
                    tp[1],
                    writer.buffered_rows,
                    reason.value,
                    exc,
                )
        return self._count(released)

    def _read_manifest(self) -> None:
        """Catch up with the manifest (other workers may have appended since the last read)."""
        entries, self._manifest_cursor = self.manifest.read_since(self._manifest_cursor)
        offsets = self._manifest_offsets
        for entry in entries:
            key = (entry.topic, entry.partition)
            offsets[key] = max(offsets.get(key, -1), entry.last_offset)
        self._manifest_stale = False

    def _dead_letter(
        self, writer: PartitionWriter, record: KafkaRecord, reason: str, exc: BaseException
    ) -> Released:
        path = self.dead_letters.write(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            reason=reason,
            timestamp_ms=record.timestamp_ms,
            error=type(exc).__name__,
        )
        self.stats.dead_letters += 1
        log.warning("%s[%d]@%d dead-lettered to %s: %s", *_where(record), path, reason)
        return writer.pass_over(record.offset, record.token)

    def _count(self, released: Released) -> Released:
        self.stats.files += len(released.files)
        return released


_REVOKED = RotationReason.PARTITION_REVOKED


def _where(record: KafkaRecord) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset

"""The bronze worker's logic, free of Faust: Kafka records in, bronze files and acks out.

`BronzeWorker` owns one `PartitionWriter` per assigned topic-partition, decodes each record,
dead-letters the ones that cannot become bronze rows, skips schema-change records and records
bronze holds already (listed in the manifest, file intact: see `streams.partition_writer`), and
returns the tokens (Faust events) that may now be acked. `streams.app` feeds it from a Faust
agent; tests feed it directly.

A record is dead-lettered, never retried and never allowed to stop its partition, when it is
bad by itself: its topic cannot name a bronze path (checked before any path is built), it is
larger than `bronze.max_message_bytes` (checked before decoding), it is not a Debezium change
event (the decoder's `DecodeError`), or a value contradicts its column's type
(`streams.value_checks`). Each dead letter
is written to the lake's `_dead_letter` area at once and queued in `pending_dead_letters` for
the caller to publish to the dead-letter topic before it acks the record.

Storage trouble (`RetriableError`, or any `OSError` from the lake) is the opposite: nothing
changes, the caller retries the same record later, and `outage` reports the episode in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from binlake.bronze.layout import HourBucket, bronze_file_path, is_safe_table_name
from binlake.bronze.manifest import Manifest
from binlake.errors import DecodeError, FinalError, RetriableError, StorageUnavailableError
from binlake.settings import Settings
from binlake.storage import LakeStorage
from cdc.avro import ConfluentAvroDecoder
from cdc.envelope import SchemaChangeRecord
from cdc.json_decoding import decode_change
from streams.dead_letter import DeadLetter, DeadLetters
from streams.flush_policy import FlushPolicy
from streams.outage import Outage
from streams.partition_writer import PartitionWriter, Released, RotationReason
from streams.value_checks import RowChecks

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
    headers: tuple[tuple[str, bytes | None], ...] = ()  # kept only if it is dead-lettered

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
        flush_policy: FlushPolicy,
        max_message_bytes: int | None = None,
        manifest: Manifest | None = None,
        dead_letters: DeadLetters | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        decode: Decoder = decode_change,
    ):
        self.storage = storage
        self.topic_prefix = topic_prefix
        self.flush_policy = flush_policy
        self.max_message_bytes = max_message_bytes
        self.manifest = manifest or Manifest(storage)
        self.dead_letters = dead_letters or DeadLetters(storage, wall_clock=wall_clock)
        self.clock = clock
        self.wall_clock = wall_clock
        self.decode = decode
        self.writers: dict[TopicPartition, PartitionWriter] = {}
        self.stats = WorkerStats()
        # Dead letters written to the lake, for the caller to publish before acking them
        # (`take_dead_letters()` after each `handle()`; a caller that does not publish may
        # leave them, at the cost of keeping their bytes).
        self.pending_dead_letters: list[DeadLetter] = []
        self.outage = Outage(
            f"bronze storage {storage.base}",
            clock=clock,
            consequence="Records wait (nothing is skipped) and offsets are not committed past "
            "what the manifest holds; retrying with backoff.",
        )
        # Highest manifest offset per partition, read incrementally from `_manifest_cursor`.
        self._manifest_offsets: dict[TopicPartition, int] = {}
        self._manifest_cursor = 0
        self._manifest_stale = True
        self.failed: dict[TopicPartition, tuple[int, BaseException]] = {}
        self._row_checks = RowChecks()
        self._topic_verdicts: dict[str, str | None] = {}

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> BronzeWorker:
        """A worker for `settings`; its decoder follows `kafka.value_format`, chosen once here."""
        if "decode" not in kwargs and settings.kafka.value_format == "avro":
            kwargs["decode"] = ConfluentAvroDecoder(
                settings.kafka.schema_registry_url
            ).decode_change
        return cls(
            LakeStorage.from_settings(settings),
            topic_prefix=settings.kafka.topic_prefix,
            flush_policy=FlushPolicy.from_settings(settings.bronze),
            max_message_bytes=settings.bronze_max_message_bytes,
            **kwargs,
        )

    # -- records ------------------------------------------------------------------------------

    def handle(self, record: KafkaRecord) -> Released:
        """Handle one record; returns the tokens that may be acked and any files written.

        Raises `RetriableError` with nothing changed: call again with the same record later. That is
        `StorageUnavailableError` for the lake (any `OSError` from it is turned into one) or, with
        Avro, `SchemaRegistryUnavailable`. Bad records never raise: they are dead-lettered (see the
        module docstring). Any other exception fails the record's partition: later records of it
        raise `PartitionFailedError` until the partition is revoked, so none is written past the one
        that failed (which the manifest-based resume would then skip for good). What was buffered
        before it can still be flushed.
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
        except OSError as exc:
            # The lake itself (a file where a directory should be, a vanished mount...): the
            # same call can succeed once the location is back, so it is retried, not fatal.
            raise StorageUnavailableError(
                f"lake storage error at {record.topic}[{record.partition}]@{record.offset}: {exc}"
            ) from exc
        except Exception as exc:
            self.failed[tp] = (record.offset, exc)
            raise

    def _handle(self, record: KafkaRecord) -> Released:
        self.stats.records += 1
        writer = self.writer_for(record.topic, record.partition)
        if writer.is_handled(record.offset):
            self.stats.already_in_bronze += 1
            return writer.skip_handled(record.offset, record.token)
        refusal = self._topic_refusal(record.topic)
        if refusal is not None:
            return self._dead_letter(writer, record, refusal, "UnsafeTopicName")
        if self.max_message_bytes is not None and record.size > self.max_message_bytes:
            # Checked before decoding: decoding a huge record is what the limit is there to avoid.
            reason = (
                f"record is {record.size} bytes (key + value), more than "
                f"bronze.max_message_bytes={self.max_message_bytes}"
            )
            return self._dead_letter(writer, record, reason, "MessageTooLarge")
        try:
            event = self.decode(
                record.key, record.value, topic=record.topic, topic_prefix=self.topic_prefix
            )
        except SchemaChangeRecord:
            log.debug("%s[%d]@%d: schema-change record, skipped", *_where(record))
            self.stats.schema_changes += 1
            return writer.pass_over(record.offset, record.token)
        except DecodeError as exc:
            return self._dead_letter(writer, record, exc.reason, type(exc).__name__)
        except RetriableError:
            raise  # e.g. the schema registry is down: the same record may decode later
        except Exception as exc:  # a decoder bug must not stop the stream
            log.exception("%s[%d]@%d: decoder failed unexpectedly", *_where(record))
            return self._dead_letter(writer, record, f"decoder error: {exc!r}", type(exc).__name__)
        mismatch = self._row_checks.problem(event.row, event.row_schema)
        if mismatch is not None:
            return self._dead_letter(writer, record, mismatch, "TypeMismatch")
        try:
            released = writer.add(
                record.offset,
                event,
                timestamp_ms=record.timestamp_ms,
                size=record.size,
                token=record.token,
            )
        except DecodeError as exc:  # raised before the writer changed anything
            return self._dead_letter(writer, record, exc.reason, type(exc).__name__)
        self.stats.rows += 1
        if released.files:
            self.outage.cleared((record.topic, record.partition))
        return self._count(released)

    def take_dead_letters(self) -> list[DeadLetter]:
        """The dead letters written since the last call, oldest first, to be published."""
        letters, self.pending_dead_letters = self.pending_dead_letters, []
        return letters

    def tick(self) -> Released:
        """Rotate files that are old enough (called by a timer).

        Storage errors are reported through `outage` and retried on the next tick; any other
        error propagates.
        """
        released = Released()
        for tp, writer in list(self.writers.items()):
            try:
                done = writer.tick()
            except (RetriableError, OSError) as exc:
                self.outage.failed(exc, tp, f"age rotation of {tp[0]}[{tp[1]}]")
                continue
            if done.files:  # a flush happened, so the write that had failed works again
                self.outage.cleared(tp)
            released.extend(done)
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
                flush_policy=self.flush_policy,
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
            self.outage.cleared(tp)  # its writer is gone: nothing of it is retried here
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
        """Catch up with the manifest (other workers may have committed since the last read)."""
        try:
            entries, self._manifest_cursor = self.manifest.read_since(self._manifest_cursor)
        except OSError as exc:  # e.g. a file where the bronze directory should be
            raise StorageUnavailableError(
                f"cannot read the bronze manifest {self.manifest.path}: {exc}"
            ) from exc
        offsets = self._manifest_offsets
        for entry in entries:
            key = (entry.topic, entry.partition)
            offsets[key] = max(offsets.get(key, -1), entry.last_offset)
        self._manifest_stale = False

    def _topic_refusal(self, topic: str) -> str | None:
        """Why records of `topic` cannot go to bronze, or None if they can (cached per topic).

        Decided from the topic name alone, before any path is built: it must be usable in a
        bronze file name, and a `<prefix>.<db>.<table>` topic must name a plain table, so no
        topic (`..`, `/`, an absolute path) can make a path that leaves the bronze root. The
        schema-change topic (the prefix alone) carries no rows and is let through to be skipped.
        """
        if topic in self._topic_verdicts:
            return self._topic_verdicts[topic]
        verdict: str | None = None
        head = f"{self.topic_prefix}."
        if topic != self.topic_prefix:
            table = topic[len(head) :] if topic.startswith(head) else ""
            if not is_safe_table_name(table):
                verdict = (
                    f"topic {topic!r} is not <{self.topic_prefix}>.<db>.<table> with a plain "
                    "table name; it cannot name a bronze path"
                )
            else:
                try:  # the exact check the writer's paths go through
                    bronze_file_path(table, HourBucket("1970-01-01", 0), topic, 0, 0)
                except ValueError as exc:
                    verdict = f"topic {topic!r} cannot name a bronze path: {exc}"
        if len(self._topic_verdicts) < 10_000:  # bounded: topic names come from the broker
            self._topic_verdicts[topic] = verdict
        return verdict

    def _dead_letter(
        self, writer: PartitionWriter, record: KafkaRecord, reason: str, error: str
    ) -> Released:
        letter = self.dead_letters.write(
            DeadLetter(
                *_where(record),  # topic, partition, offset
                record.key,
                record.value,
                reason,
                error,
                record.timestamp_ms,
                record.headers,
                token=record.token,
            )
        )
        self.outage.cleared((record.topic, record.partition))  # the lake took a write
        self.stats.dead_letters += 1
        log.warning("%s[%d]@%d dead-lettered to %s: %s", *_where(record), letter.path, reason)
        self.pending_dead_letters.append(letter)
        return writer.pass_over(record.offset, record.token)

    def _count(self, released: Released) -> Released:
        self.stats.files += len(released.files)
        return released


_REVOKED = RotationReason.PARTITION_REVOKED


def _where(record: KafkaRecord) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset

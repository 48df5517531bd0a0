"""Kafka calls behind a consumer group reset and consumer lag: partitions, committed offsets,
members, the ends of a partition, the offset of a time, and moving the group's offsets
(confluent-kafka's AdminClient).

Topics written by Debezium with exactly-once support are transactional: each transaction ends
with a commit (or abort) marker that takes an offset but is no record, and aborted records stay
in the log, skipped by read_committed readers. So offsets have gaps, and a partition has two
ends (both from Kafka's ListOffsets):

* the high watermark (`log_end`): the offset the next record will get, markers included;
* the last stable offset (`stable_end`, LSO): where a read_committed reader (the bronze
  writer) stops; below the high watermark while a transaction is open.

A read_committed consumer that read everything commits the offset after its last record, which
may be a commit marker: one below the high watermark, and still caught up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from binlake.errors import GroupInUseError, ReplayError
from binlake.retry import Backoff, retry_with_backoff

TIMEOUT_SECONDS = 15.0
# librdkafka's own log (a broker it cannot reach: a line every few milliseconds) goes to this
# logger instead of stderr: the worker and Dagster log it like any other, the CLI says in one line
# what is down.
LIBRDKAFKA_LOG = logging.getLogger("binlake.librdkafka")
# A read gives up when neither a record nor the end of the partition came for this long.
IDLE_READ_SECONDS = 10.0
NO_OFFSET = -1001  # librdkafka's OFFSET_INVALID: the group has no committed offset
_COORDINATOR_NOT_READY = (
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
)
# A broker just restarted answers ListOffsets with these until its partitions' leaders and
# epochs are settled ("Leader epoch is newer than broker epoch"); librdkafka does not flag
# them retriable in admin results.
_LEADERSHIP_SETTLING = (
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.OFFSET_NOT_AVAILABLE,
)
_IDLE_STATES = (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD, ConsumerGroupState.UNKNOWN)


def _coordinator_loading(exc: Exception) -> bool:
    """A new broker loads its group coordinator (__consumer_offsets) on first use and says so
    (COORDINATOR_LOAD_IN_PROGRESS, retriable): ask again."""
    if not isinstance(exc, KafkaException):
        return False
    error = exc.args[0]
    return error.code() in _COORDINATOR_NOT_READY or error.retriable()


def _leadership_settling(exc: Exception) -> bool:
    """ListOffsets failed the way a broker answers while it starts: ask again."""
    if not isinstance(exc, KafkaException):
        return False
    error = exc.args[0]
    return error.code() in _LEADERSHIP_SETTLING or error.retriable()


Record = tuple[bytes | None, bytes | None, int]  # key, value, Kafka timestamp ms


@dataclass(frozen=True)
class RecordsRead:
    """What a read_committed read of a partition found: how many records (markers and aborted
    records are none), whether it reached the end, and the first and last record."""

    count: int
    reached_end: bool  # the last stable offset, or the offset the read was to stop before
    first: Record | None
    last: Record | None


@dataclass(frozen=True)
class GroupMembers:
    """A consumer group's state and its members as the broker describes them."""

    group: str
    state: str
    members: tuple[str, ...]  # "member id (client id@host)"; a broker may list none

    @property
    def active(self) -> bool:
        return bool(self.members) or self.state not in {s.name for s in _IDLE_STATES}

    def refusal(self) -> str:
        listed = ", ".join(self.members) if self.members else "not listed by the broker"
        return (
            f"consumer group {self.group!r} is in use (state {self.state}; members: {listed}). "
            "Kafka moves the offsets of a group only while it has no member: stop its consumers "
            "first (for the bronze writer, `binlake worker` or the stack's bronze-worker), and "
            "after a consumer was killed wait for its session to time out."
        )


class GroupOffsetsClient:
    """The consumer group and partition facts a reset needs, from one Kafka cluster."""

    def __init__(self, bootstrap_servers: str, *, timeout: float = TIMEOUT_SECONDS):
        self.bootstrap_servers = bootstrap_servers
        self.timeout = timeout
        self.admin = AdminClient({"bootstrap.servers": bootstrap_servers, "logger": LIBRDKAFKA_LOG})

    def partitions(self, topic: str) -> list[int]:
        """The topic's partitions; ReplayError if the broker has no such topic."""
        metadata = self.admin.list_topics(topic=topic, timeout=self.timeout)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise ReplayError(f"topic {topic!r} does not exist on {self.bootstrap_servers}")
        return sorted(found.partitions)

    def committed(self, group: str, topic: str, partitions: Iterable[int]) -> dict[int, int | None]:
        """The group's committed offset per partition (None where it has none)."""
        request = ConsumerGroupTopicPartitions(
            group, [TopicPartition(topic, p) for p in partitions]
        )
        answer = retry_with_backoff(
            lambda: self.admin.list_consumer_group_offsets([request])[group].result(self.timeout),
            Backoff(first=0.2, longest=0.2, give_up_after=self.timeout),
            retry_if=_coordinator_loading,
        )
        return {
            tp.partition: None if tp.offset < 0 else tp.offset for tp in answer.topic_partitions
        }

    def members(self, group: str) -> GroupMembers:
        description = self.admin.describe_consumer_groups([group])[group].result(self.timeout)
        return GroupMembers(
            group,
            description.state.name,
            tuple(f"{m.member_id} ({m.client_id}@{m.host})" for m in description.members or ()),
        )

    def log_start(self, topic: str, partition: int) -> int:
        """The partition's oldest offset still in Kafka (older ones were deleted by retention)."""
        return self.list_offsets(topic, [partition], OffsetSpec.earliest())[partition]

    def log_end(self, topic: str, partition: int) -> int:
        """The offset the partition's next record will get (the high watermark; transaction
        markers and aborted records included)."""
        return self.list_offsets(
            topic, [partition], OffsetSpec.latest(), IsolationLevel.READ_UNCOMMITTED
        )[partition]

    def stable_end(self, topic: str, partition: int) -> int:
        """Where a read_committed reader stops (the last stable offset): the high watermark,
        or the first offset of the oldest transaction still open."""
        return self.list_offsets(topic, [partition], OffsetSpec.latest())[partition]

    def offset_for_time(self, topic: str, partition: int, time_ms: int) -> int:
        """The first offset whose record timestamp is at or after `time_ms`, as a read_committed
        reader sees the partition (the stable end if none).

        The answer may be a commit marker's offset (a marker's timestamp is when it was written);
        a reader starting there reads the records after it. Records of a transaction not
        committed yet are not considered: the answer is then at most the stable end.
        """
        found = self.list_offsets(topic, [partition], OffsetSpec.for_timestamp(time_ms))
        if found[partition] < 0:  # no committed record at or after the time
            return self.stable_end(topic, partition)
        return found[partition]

    def list_offsets(
        self,
        topic: str,
        partitions: Iterable[int],
        spec: OffsetSpec,
        isolation: IsolationLevel = IsolationLevel.READ_COMMITTED,
    ) -> dict[int, int]:
        """Kafka's ListOffsets for the partitions; ReplayError naming them if the broker
        answers with an error. The errors of a broker still starting are asked again for up to
        `timeout` seconds."""
        request = {TopicPartition(topic, p): spec for p in partitions}
        if not request:
            return {}

        def ask() -> dict[int, int]:
            answers = self.admin.list_offsets(
                request, isolation_level=isolation, request_timeout=self.timeout
            )
            return {
                tp.partition: future.result(self.timeout).offset for tp, future in answers.items()
            }

        try:
            return retry_with_backoff(
                ask,
                Backoff(first=0.2, longest=2.0, give_up_after=self.timeout),
                retry_if=_leadership_settling,
            )
        except KafkaException as exc:
            raise ReplayError(
                f"cannot list offsets of {topic}{sorted(tp.partition for tp in request)} on "
                f"{self.bootstrap_servers}: {exc.args[0].str()}"
            ) from exc

    def records_between(self, topic: str, partition: int, start: int, end: int) -> int:
        """The records a read_committed reader gets from offset `start` up to `end` (excluded):
        0 when only transaction markers and aborted records lie between."""
        if end <= start:
            return 0
        return self.read_records(topic, partition, start, stop_before=end).count

    def read_records(
        self,
        topic: str,
        partition: int,
        start: int,
        *,
        cap: int | None = None,
        stop_before: int | None = None,
    ) -> RecordsRead:
        """Read the partition from `start` as a read_committed reader, to its last stable
        offset, or up to `stop_before`, or until `cap` records were read."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": "binlake-offsets-reader",  # never joined nor committed: assigned
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 100,  # the end of the partition is seen within 100 ms
                "logger": LIBRDKAFKA_LOG,
            }
        )
        count, first, last = 0, None, None
        try:
            consumer.assign([TopicPartition(topic, partition, start)])
            idle_since = time.monotonic()
            while cap is None or count < cap:
                message = consumer.poll(0.2)
                if message is None:
                    if time.monotonic() - idle_since > IDLE_READ_SECONDS:
                        raise ReplayError(
                            f"reading {topic}[{partition}] from offset {start} got no record "
                            f"and no end of partition for {IDLE_READ_SECONDS:.0f} s"
                        )
                    continue
                idle_since = time.monotonic()
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return RecordsRead(count, True, first, last)
                    raise ReplayError(
                        f"cannot read {topic}[{partition}] from {start}: {error.str()}"
                    )
                if stop_before is not None and message.offset() >= stop_before:
                    return RecordsRead(count, True, first, last)
                record = (message.key(), message.value(), message.timestamp()[1])
                count += 1
                if first is None:
                    first = record
                last = record
            return RecordsRead(count, False, first, last)
        finally:
            consumer.close()

    def reset(self, group: str, topic: str, offsets: dict[int, int]) -> None:
        """Set the group's committed offsets; GroupInUseError if the broker refuses for members."""
        request = ConsumerGroupTopicPartitions(
            group, [TopicPartition(topic, p, o) for p, o in sorted(offsets.items())]
        )
        try:
            answer = self.admin.alter_consumer_group_offsets([request])[group].result(self.timeout)
        except KafkaException as exc:
            raise self._refused(group, exc.args[0]) from exc
        for tp in answer.topic_partitions:
            if tp.error is not None:
                raise self._refused(group, tp.error)

    def _refused(self, group: str, error: KafkaError) -> ReplayError:
        if error.code() in (
            KafkaError.UNKNOWN_MEMBER_ID,
            KafkaError.REBALANCE_IN_PROGRESS,
            KafkaError.ILLEGAL_GENERATION,
            KafkaError.NON_EMPTY_GROUP,
        ):
            members = self.members(group)
            return GroupInUseError(f"{members.refusal()} The broker said: {error.str()}")
        return ReplayError(f"the broker refused to move the offsets of {group!r}: {error.str()}")

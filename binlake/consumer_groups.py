"""Kafka calls behind a consumer group reset: partitions, committed offsets, members, the end of a
partition, the offset of a time, and moving the group's offsets (confluent-kafka).

Two answers are not taken from the broker as they are, because Tansu gets them wrong (see
/work/shared/verified-setup.md) and a reset built on them would replay or skip records:

* the end of a partition is where a read from just below the high watermark reaches the end
  (Tansu's high watermark is the start of the last batch + 1, not the end);
* the offset of a time is found by reading record timestamps forward from the broker's
  `offsets_for_times` answer (Tansu answers 0 for any time): the first offset whose timestamp is
  at or after the time. On Kafka that is one record read; on Tansu a read from the start.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from binlake.errors import GroupInUseError, ReplayError

TIMEOUT_SECONDS = 15.0
# Reading a partition stops once no record came for this long without the end being reported.
IDLE_READ_SECONDS = 10.0
NO_OFFSET = -1001  # librdkafka's OFFSET_INVALID: the group has no committed offset
_IDLE_STATES = (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD, ConsumerGroupState.UNKNOWN)


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


def first_offset_at_or_after(timestamps: Iterable[tuple[int, int]], time_ms: int) -> int | None:
    """The first offset of `(offset, timestamp ms)` pairs, read in offset order, whose timestamp
    is at or after `time_ms`; None when none is."""
    for offset, timestamp in timestamps:
        if timestamp >= time_ms:
            return offset
    return None


class GroupOffsetsClient:
    """The consumer group and partition facts a reset needs, from one Kafka cluster."""

    def __init__(self, bootstrap_servers: str, *, timeout: float = TIMEOUT_SECONDS):
        self.bootstrap_servers = bootstrap_servers
        self.timeout = timeout
        self.admin = AdminClient({"bootstrap.servers": bootstrap_servers})

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
        answer = self.admin.list_consumer_group_offsets([request])[group].result(self.timeout)
        return {
            tp.partition: None if tp.offset < 0 else tp.offset for tp in answer.topic_partitions
        }

    def members(self, group: str) -> GroupMembers:
        description = self.admin.describe_consumer_groups([group])[group].result(self.timeout)
        return GroupMembers(
            group,
            description.state.name,
            tuple(
                f"{m.member_id} ({m.client_id}@{m.host})" for m in description.members or ()
            ),
        )

    def log_start(self, topic: str, partition: int) -> int:
        """The partition's oldest offset still in Kafka (older ones were deleted by retention)."""
        consumer = self._reader()
        try:
            low, _ = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=self.timeout
            )
            return low
        finally:
            consumer.close()

    def log_end(self, topic: str, partition: int) -> int:
        """The offset the partition's next record will get."""
        consumer = self._reader()
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=self.timeout
            )
            end = max(low, high - 1)
            for offset, _ in self._read(consumer, topic, partition, max(low, high - 1)):
                end = offset + 1
            return end
        finally:
            consumer.close()

    def offset_for_time(self, topic: str, partition: int, time_ms: int) -> int:
        """The first offset whose record timestamp is at or after `time_ms` (the end if none)."""
        consumer = self._reader()
        try:
            [answer] = consumer.offsets_for_times(
                [TopicPartition(topic, partition, time_ms)], timeout=self.timeout
            )
            if answer.offset < 0:  # no record at or after the time
                return self.log_end(topic, partition)
            end = answer.offset

            def read() -> Iterator[tuple[int, int]]:
                nonlocal end
                for offset, timestamp in self._read(consumer, topic, partition, answer.offset):
                    end = offset + 1
                    yield offset, timestamp

            found = first_offset_at_or_after(read(), time_ms)
            return end if found is None else found
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

    def _reader(self) -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": "binlake-replay-reader",  # never joined: partitions are assigned
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 100,  # Tansu starves consumers below 30 ms
            }
        )

    def _read(
        self, consumer: Consumer, topic: str, partition: int, start: int
    ) -> Iterator[tuple[int, int]]:
        """(offset, timestamp ms) of the partition's records from `start` to its end."""
        consumer.assign([TopicPartition(topic, partition, start)])
        idle = 0.0
        while idle < IDLE_READ_SECONDS:
            message = consumer.poll(0.5)
            if message is None:
                idle += 0.5
                continue
            idle = 0.0
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return
                raise ReplayError(f"cannot read {topic}[{partition}] from {start}: {error.str()}")
            yield message.offset(), message.timestamp()[1]
        raise ReplayError(
            f"reading {topic}[{partition}] from offset {start} got no record and no end of "
            f"partition for {IDLE_READ_SECONDS:.0f}s (is {start} past the end?)"
        )

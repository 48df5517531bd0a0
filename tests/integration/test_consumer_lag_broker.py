"""Consumer lag against a real Kafka broker on a transactional topic: commit markers, an aborted
transaction, an open one, and a consumer group that commits where a read_committed reader stops.
Also the plain ListOffsets answers of GroupOffsetsClient on the same topic."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from binlake.bronze.consumer_lag import measure_consumer_lag
from binlake.consumer_groups import GroupOffsetsClient
from binlake.settings import Settings
from tests.support.debezium import PREFIX, key_bytes, order_row, source, value_bytes

pytestmark = pytest.mark.integration

TABLE = "shop.orders"
T0 = 1_795_248_000_000  # source commit times (whole seconds, as on MariaDB)


def change(order_id: int, ts_ms: int) -> tuple[bytes, bytes]:
    return key_bytes(order_id), value_bytes(
        "c", None, order_row(id=order_id), src=source(ts_ms=ts_ms)
    )


def transaction(producer: Producer, topic: str, records, *, commit: bool = True) -> None:
    producer.begin_transaction()
    for key, value in records:
        producer.produce(topic, key=key, value=value)
    producer.flush(30)  # aborting purges what is not sent yet: send it, so it takes offsets
    if commit:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)


def settle(client: GroupOffsetsClient, topic: str, stable_end: int) -> None:
    """A commit returns before the coordinator wrote the markers: wait for the LSO."""
    deadline = time.monotonic() + 30
    while client.stable_end(topic, 0) < stable_end:
        assert time.monotonic() < deadline, f"LSO of {topic} never reached {stable_end}"
        time.sleep(0.1)


def commit_group(bootstrap: str, group: str, topic: str, records: int) -> int:
    """A read_committed member of `group` reads `records` records and commits after the last;
    returns the committed offset."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    try:
        consumer.subscribe([topic])
        read = []
        deadline = time.monotonic() + 60
        while len(read) < records:
            assert time.monotonic() < deadline, f"read {len(read)} of {records} records"
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                read.append(message)
        [committed] = consumer.commit(message=read[-1], asynchronous=False)
        return committed.offset
    finally:
        consumer.close()


def test_lag_counts_records_not_offsets_on_a_transactional_topic(kafka_broker: str) -> None:
    run = uuid.uuid4().hex[:8]
    prefix = f"{PREFIX}{run}"
    topic = f"{prefix}.{TABLE}"
    group = f"bronze-{run}"
    settings = Settings(
        tables=[TABLE],
        kafka={"bootstrap_servers": kafka_broker, "topic_prefix": prefix},
        bronze={"app_id": group},
    )
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    client = GroupOffsetsClient(kafka_broker)

    [absent] = measure_consumer_lag(settings)
    assert (absent.state, absent.records, absent.seconds) == ("no topic", None, None)

    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka_broker, "transactional.id": f"tx-{run}"})
    producer.init_transactions(30)
    # offsets 0,1,2 + commit marker 3 | 4,5 aborted + abort marker 6 | 7 + marker 8 | 9,10 + 11
    transaction(producer, topic, [change(i, T0 + i * 1000) for i in (1, 2, 3)])
    transaction(producer, topic, [change(90, T0 + 4000), change(91, T0 + 4000)], commit=False)
    transaction(producer, topic, [change(4, T0 + 10_000)])
    transaction(producer, topic, [change(5, T0 + 25_000), change(6, T0 + 42_000)])
    settle(client, topic, 12)
    assert (client.log_start(topic, 0), client.log_end(topic, 0)) == (0, 12)
    # Between the commit marker 3 and record 7 lie only aborted records and markers.
    assert client.records_between(topic, 0, 3, 7) == 0
    assert client.records_between(topic, 0, 3, 8) == 1
    assert client.records_between(topic, 0, 0, 12) == 6

    [no_commit] = measure_consumer_lag(settings)
    assert (no_commit.state, no_commit.records, no_commit.seconds) == ("no commit", None, None)

    # The writer took the first transaction: committed 3 (the marker's offset).
    assert commit_group(kafka_broker, group, topic, 3) == 3
    [behind] = measure_consumer_lag(settings)
    assert (behind.state, behind.records, behind.exact, behind.at_most) == ("ok", 3, True, 9)
    assert (behind.oldest_pending_ms, behind.newest_ms) == (T0 + 10_000, T0 + 42_000)
    assert behind.seconds == 32.0
    [partition] = behind.partitions
    assert (partition.committed, partition.stable_end, partition.high_watermark) == (3, 12, 12)

    # A read capped at 2 records: at least 2; the newest commit still found at the end.
    [capped] = measure_consumer_lag(settings, read_cap=2)
    assert (capped.records, capped.exact, capped.at_most, capped.seconds) == (2, False, 9, 32.0)

    # An open transaction after everything: not lag (not readable yet), the LSO stays at 12.
    other = Producer({"bootstrap.servers": kafka_broker, "transactional.id": f"open-{run}"})
    other.init_transactions(30)
    other.begin_transaction()
    other.produce(topic, *change(7, T0 + 50_000))
    other.flush(30)
    try:
        assert (client.stable_end(topic, 0), client.log_end(topic, 0)) == (12, 13)
        # The writer read the rest (records 7, 9, 10): it commits 11, one below the end 12
        # (the marker); lag 0 though the high watermark is 13.
        assert commit_group(kafka_broker, group, topic, 3) == 11
        [caught_up] = measure_consumer_lag(settings)
        assert (caught_up.records, caught_up.exact, caught_up.seconds) == (0, True, 0.0)
        [partition] = caught_up.partitions
        assert (partition.committed, partition.stable_end, partition.high_watermark) == (
            11,
            12,
            13,
        )
    finally:
        other.abort_transaction(30)

    # The offset of a time, as a read_committed reader sees it (no read of the topic).
    settle(client, topic, 14)  # the open transaction aborted: its record 12, its marker 13
    produced = _timestamps(kafka_broker, topic)
    assert sorted(produced) == [0, 1, 2, 7, 9, 10]
    assert client.offset_for_time(topic, 0, produced[0]) == 0
    # Record 7 or the abort marker 6 just before it (a marker's timestamp is when the
    # coordinator wrote it, which may be the same millisecond or later): a reader from either
    # gets 7 first. Never the aborted 4, 5 or anything before.
    assert client.offset_for_time(topic, 0, produced[7]) in (6, 7)
    assert client.offset_for_time(topic, 0, produced[10] + 60_000) == 14  # none: the end


def _timestamps(bootstrap: str, topic: str) -> dict[int, int]:
    """Kafka timestamp per offset of the records a read_committed reader gets."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "timestamps-reader",
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        found: dict[int, int] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                break  # the end of the partition
            found[message.offset()] = message.timestamp()[1]
        return found
    finally:
        consumer.close()

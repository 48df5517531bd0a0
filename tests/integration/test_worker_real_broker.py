"""The real Faust worker against a real Kafka broker.

The worker starts first; the CDC topic is created afterwards (as Debezium does for a new table),
so the worker has to discover it. Records go in through confluent-kafka, bronze comes out; after
a restart with the consumer group rewound to 0, every offset must still be in bronze exactly once.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from binlake.bronze.manifest import Manifest
from binlake.storage import LakeStorage
from streams.dead_letter import dead_letter_path
from tests.support.processes import wait_for
from tests.support.worker import bronze_offsets, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 3


def test_worker_discovers_a_new_topic_and_writes_each_offset_once(tmp_path, kafka, dbz, processes):
    lake_dir = tmp_path / "lake"
    lake = LakeStorage.from_url(str(lake_dir))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BINLAKE_")}
    env.update(
        kafka.env(),
        BINLAKE_STORAGE_URL=str(lake_dir),
        BINLAKE_STATE_DIR=str(tmp_path / "state"),
    )
    log = tmp_path / "worker.log"
    orders = kafka.table()
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 0})
    expected: set[tuple[int, int]] = set()
    dead: set[tuple[int, int]] = set()
    next_offset = [0] * PARTITIONS

    def produce(id_: int, kv: tuple[bytes | None, bytes | None], *, bad: bool = False) -> None:
        partition = id_ % PARTITIONS
        producer.produce(orders.topic, key=kv[0], value=kv[1], partition=partition)
        (dead if bad else expected).add((partition, next_offset[partition]))
        next_offset[partition] += 1

    def produce_batch(ids: range) -> None:
        for id_ in ids:
            produce(id_, orders.change("c", id_, ts_ms=dbz.BASE_TS_MS + id_ * 1000))
            if id_ % 10 == 0:
                produce(id_, orders.change("d", id_, ts_ms=dbz.BASE_TS_MS + id_ * 1000 + 1))
                produce(id_, orders.tombstone(id_))
        assert producer.flush(10) == 0

    worker = processes.add(start_worker(env, log))
    try:
        # With no CDC topic the worker waits for one: Faust cannot start on an empty
        # subscription (and binlake has no leader topic to subscribe to instead).
        waiting = "waiting for Debezium to create one"
        wait_for(lambda: waiting in log.read_text(errors="replace"), 60, "worker waiting", log)
        time.sleep(2)  # it keeps waiting, alive
        assert worker.poll() is None and "Worker]: Ready" not in log.read_text(errors="replace")

        # Debezium creates the topic of a new table while the worker runs.
        created = time.monotonic()
        admin.create_topics([NewTopic(orders.topic, PARTITIONS, 1)])[orders.topic].result(10)
        wait_for(lambda: "Worker]: Ready" in log.read_text(errors="replace"), 60, "worker", log)
        produce_batch(range(300))
        produce(1, (b"not json", b"{broken"), bad=True)
        producer.flush(10)
        wait_for(lambda: set(bronze_offsets(lake)) == expected, 60, "first batch in bronze", log)
        pickup = time.monotonic() - created
        print(f"new topic: created -> all {len(expected)} rows in bronze in {pickup:.1f}s")
        assert pickup < 30

        latencies = []
        for id_ in (1001, 1004, 1007):  # one insert each, nothing else in flight
            partition = id_ % PARTITIONS
            probe = (partition, next_offset[partition])
            sent = time.monotonic()
            produce_batch(range(id_, id_ + 1))
            wait_for(lambda p=probe: p in bronze_offsets(lake), 20, "one row", log)
            latencies.append(time.monotonic() - sent)
        print("produce -> bronze latency (s):", ", ".join(f"{x:.2f}" for x in latencies))
        assert min(latencies) < 3.0
    finally:
        returncode = processes.stop(worker)
    assert returncode == 0, log.read_text(errors="replace")[-4000:]

    # Every handled record (rows and the dead letter) was acked and committed.
    group = kafka.group
    committed = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(orders.topic, p) for p in range(3)])]
    )[group].result(10)
    assert {tp.partition: tp.offset for tp in committed.topic_partitions} == dict(
        enumerate(next_offset)
    )
    for partition, offset in dead:
        letter = json.loads(lake.read_bytes(dead_letter_path(orders.topic, partition, offset)))
        assert letter["value_b64"] and letter["offset"] == offset

    # Rewind the group to 0 and add records: the restarted worker must not duplicate anything.
    admin.alter_consumer_group_offsets(
        [
            ConsumerGroupTopicPartitions(
                group, [TopicPartition(orders.topic, p, 0) for p in range(PARTITIONS)]
            )
        ]
    )[group].result(10)
    produce_batch(range(2000, 2100))
    worker = processes.add(start_worker(env, log))
    try:
        wait_for(lambda: set(bronze_offsets(lake)) == expected, 90, "second batch in bronze", log)
    finally:
        returncode = processes.stop(worker)
    assert returncode == 0

    seen = bronze_offsets(lake)
    assert set(seen) == expected
    assert all(count == 1 for count in seen.values()), [k for k, c in seen.items() if c > 1]
    on_disk = {str(p.relative_to(lake_dir)) for p in (lake_dir / "bronze").rglob("*.parquet")}
    assert on_disk == {entry.path for entry in Manifest(lake).entries()}

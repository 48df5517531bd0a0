"""A partition whose fetched records were dropped without a seek back (the fault Faust's consumer
was seen to make during a rebalance, injected here by `consumer.lose_fetched`): the real worker's
stall watch notices records waiting on the real broker, seeks back, and bronze gets every offset
exactly once."""

from __future__ import annotations

from collections import Counter

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from binlake import failpoints
from binlake.storage import LakeStorage
from tests.support.processes import wait_for
from tests.support.worker import bronze_offsets, start_worker, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RECORDS = 30


def test_records_dropped_by_the_consumer_reach_bronze_through_the_stall_watch(
    tmp_path, kafka, dbz, processes
):
    orders = kafka.table()
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(orders.topic, 1, 1)])[orders.topic].result(10)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 0})
    for id_ in range(RECORDS):
        key, value = orders.change("c", id_, ts_ms=dbz.BASE_TS_MS + id_)
        producer.produce(orders.topic, key=key, value=value, partition=0)
    assert producer.flush(30) == 0

    env = worker_env(
        kafka,
        tmp_path / "lake",
        tmp_path / "state",
        BINLAKE_BRONZE__FLUSH_SECONDS="0.3",
        BINLAKE_BRONZE__STALL_SECONDS="3",
        BINLAKE_FAILPOINTS=failpoints.LOSE_FETCHED,
    )
    log = tmp_path / "worker.log"
    processes.add(start_worker(env, log))
    lake = LakeStorage.from_url(str(tmp_path / "lake"))
    wait_for(
        lambda: set(bronze_offsets(lake)) == {(0, offset) for offset in range(RECORDS)},
        120,
        "every offset in bronze",
        log,
    )
    text = log.read_text(errors="replace")
    assert f"binlake fault {failpoints.LOSE_FETCHED} injected" in text
    assert "seeking back to the committed offsets" in text
    assert "restarting the worker" not in text
    assert bronze_offsets(lake) == Counter({(0, offset): 1 for offset in range(RECORDS)})

"""The real bronze worker reading a topic written in transactions, as Kafka Connect writes with
exactly-once source delivery: aborted records never reach bronze, the offsets of commit markers
are no holes in bronze, and the committed offset follows bronze to the end of the topic (it used
to trail it by one transaction per commit interval)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from binlake.bronze.continuity import offset_continuity
from binlake.bronze.manifest import Manifest
from binlake.storage import LakeStorage
from tests.support.processes import wait_for
from tests.support.worker import committed_offsets, start_worker, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SMALL_TRANSACTIONS = 120  # at the old pace, one per commit interval (1 s), two minutes behind


def bronze_ids(lake: LakeStorage) -> list[int]:
    ids: list[int] = []
    for entry in Manifest(lake).entries():
        ids += pq.read_table(lake.full_path(entry.path), columns=["id"]).column("id").to_pylist()
    return ids


def test_the_worker_reads_committed_transactions_only_and_keeps_up(
    tmp_path, kafka, dbz, processes
) -> None:
    lake = LakeStorage.from_url(str(tmp_path / "lake"))
    orders = kafka.table()
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(orders.topic, 1, 1)])[orders.topic].result(10)
    producer = Producer(
        {"bootstrap.servers": kafka.bootstrap, "transactional.id": f"{kafka.prefix}-tx"}
    )
    producer.init_transactions(10)

    def transaction(ids: range, *, commit: bool = True) -> None:
        producer.begin_transaction()
        for id_ in ids:
            key, value = orders.change("c", id_, ts_ms=dbz.BASE_TS_MS + id_ * 1000)
            producer.produce(orders.topic, key=key, value=value, partition=0)
        if commit:
            producer.commit_transaction(10)
        else:
            producer.flush(10)
            producer.abort_transaction(10)

    transaction(range(50))
    transaction(range(50, 60), commit=False)  # as a crashed Connect worker's open transaction
    transaction(range(60, 100))
    for first in range(100, 100 + 2 * SMALL_TRANSACTIONS, 2):  # a marker every two records
        transaction(range(first, first + 2))
    expected = [*range(50), *range(60, 100 + 2 * SMALL_TRANSACTIONS)]
    log = tmp_path / "worker.log"
    processes.add(start_worker(worker_env(kafka, tmp_path / "lake", tmp_path / "state"), log))
    wait_for(lambda: sorted(bronze_ids(lake)) == expected, 120, "committed rows in bronze", [log])

    # Every offset up to the last record is accounted for: rows, or markers and aborted records.
    [partition] = offset_continuity(Manifest(lake).entries())
    assert partition.gaps == () and partition.overlaps == ()
    # Before the last record: 10 aborted records and the markers of every other transaction
    # (2 + SMALL_TRANSACTIONS of them; the last transaction's marker follows it).
    last_record = len(expected) + 10 + (2 + SMALL_TRANSACTIONS) - 1
    assert partition.last_offset == last_record
    # The group commits past the last transaction soon after bronze holds it.
    wait_for(
        lambda: committed_offsets(admin, orders.topic, 1, kafka.group)[0] >= last_record + 1,
        30,
        "the committed offset to reach the end of bronze",
        [log],
    )

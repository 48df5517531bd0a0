"""Backpressure against a real Kafka broker: the real worker waits out an unwritable lake and
loses nothing (the unit tests are in tests/streams/test_backpressure.py)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from binlake.bronze.manifest import Manifest
from binlake.storage import LakeStorage
from tests.support.lake_outage import bronze_replaced_by_a_file
from tests.support.processes import wait_for
from tests.support.worker import bronze_offsets, start_ready_worker


def manifest_last_offsets(manifest_file: Path, topic: str) -> dict[int, int]:
    last: dict[int, int] = {}
    storage = LakeStorage.from_url(str(manifest_file.parent))
    for entry in Manifest(storage, manifest_file.name).entries():
        if entry.topic == topic:
            last[entry.partition] = max(last.get(entry.partition, -1), entry.last_offset)
    return last


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_the_worker_waits_out_an_unwritable_lake_and_loses_nothing(
    tmp_path, kafka, dbz, processes, bronze_kit
):
    def committed_offsets(admin: Any, topic: str, partitions: int) -> dict[int, int]:
        return bronze_kit.committed_offsets(admin, topic, partitions, kafka.group)

    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    orders = kafka.table()
    partitions = 2
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(orders.topic, partitions, 1)])[orders.topic].result(10)
    lake_dir = tmp_path / "lake"
    lake = LakeStorage.from_url(str(lake_dir))
    log = tmp_path / "worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BINLAKE_")}
    env.update(
        kafka.env(),
        BINLAKE_STORAGE_URL=str(lake_dir),
        BINLAKE_STATE_DIR=str(tmp_path / "state"),
        BINLAKE_BRONZE__FLUSH_SECONDS="0.3",
        BINLAKE_BRONZE__FLUSH_ROWS="10",
    )
    worker = start_ready_worker(processes, env, log)

    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 0})
    produced: set[tuple[int, int]] = set()

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        produced.add((msg.partition(), msg.offset()))

    def produce(ids: range) -> None:
        for id_ in ids:
            key, value = orders.change("c", id_, ts_ms=dbz.BASE_TS_MS + id_ * 1000)
            producer.produce(
                orders.topic,
                key=key,
                value=value,
                partition=id_ % partitions,
                on_delivery=delivered,
            )
        assert producer.flush(30) == 0

    def ends() -> dict[int, int]:
        return {p: 1 + max(o for q, o in produced if q == p) for p in range(partitions)}

    # Before: everything produced is in bronze and committed.
    produce(range(40))
    wait_for(lambda: set(bronze_offsets(lake)) == produced, 60, "first batch in bronze", log)
    wait_for(
        lambda: committed_offsets(admin, orders.topic, partitions) == ends(), 60, "commit", log
    )
    before = dict(ends())
    outage_started = len(log.read_text(errors="replace"))

    with bronze_replaced_by_a_file(lake_dir) as away:
        produce(range(40, 80))
        wait_for(
            lambda: "bronze storage" in log.read_text(errors="replace")[outage_started:],
            60,
            "the outage in the log",
            log,
        )
        # Keep producing; the committed offsets never pass what the manifest holds.
        samples = 0
        for batch in range(8):
            produce(range(80 + batch * 10, 90 + batch * 10))
            committed = committed_offsets(admin, orders.topic, partitions)
            durable = manifest_last_offsets(away / "_manifest" / "manifest.jsonl", orders.topic)
            for partition, offset in committed.items():
                assert offset <= durable.get(partition, -1) + 1, (committed, durable)
            assert committed == before, "nothing new is durable, so nothing new is committed"
            samples += 1
            time.sleep(0.5)
        assert samples == 8 and worker.poll() is None, "the worker must keep running"
        during = log.read_text(errors="replace")[outage_started:]

    wait_for(lambda: set(bronze_offsets(lake)) == produced, 90, "every offset in bronze", log)
    wait_for(
        lambda: committed_offsets(admin, orders.topic, partitions) == ends(), 60, "commit", log
    )

    seen = bronze_offsets(lake)
    assert set(seen) == produced and len(produced) == 160
    assert all(count == 1 for count in seen.values()), [k for k, c in seen.items() if c > 1]
    on_disk = {str(p.relative_to(lake_dir)) for p in (lake_dir / "bronze").rglob("*.parquet")}
    assert on_disk == {entry.path for entry in Manifest(lake).entries()}

    # The log: one error when it started, not one line per record; one line when it ended.
    after = log.read_text(errors="replace")[outage_started:]
    started = re.findall(r"\[ERROR\] bronze storage \S+ unavailable", after)
    assert len(started) == 1, after[-4000:]
    assert "available again" in after
    outage_lines = [line for line in during.splitlines() if "unavailable" in line]
    assert len(outage_lines) < 10, outage_lines  # 120 records waited meanwhile
    assert processes.stop(worker) == 0, log.read_text(errors="replace")[-4000:]

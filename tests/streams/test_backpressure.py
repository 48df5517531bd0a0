"""Backpressure: while the lake cannot be written, the worker waits, commits nothing it has not
made durable, says so in its log once (plus reminders), and loses nothing when the lake is back.

The fault is real and works as root (who ignores file permissions): the lake's `bronze`
directory is moved away and a regular *file* named `bronze` put in its place, so every write
and every manifest read below it fails with ENOTDIR/EEXIST until the directory is moved back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from binlake.bronze.manifest import Manifest
from binlake.errors import StorageUnavailableError
from binlake.storage import LakeStorage
from streams.app import BronzeApp
from streams.bronze_worker import BronzeWorker, KafkaRecord, Outage
from tests.support.agent import FakeClock, in_memory_app, until
from tests.support.processes import wait_for
from tests.support.worker import bronze_offsets, start_ready_worker

GROUP = "binlake-bronze"
TS_MS = 1_795_255_200_500


@contextmanager
def bronze_replaced_by_a_file(lake_dir: Path) -> Iterator[Path]:
    """Make `<lake>/bronze` unusable (a regular file) for the duration; yields the real dir."""
    bronze, away = lake_dir / "bronze", lake_dir / "bronze.away"
    bronze.rename(away)
    bronze.write_bytes(b"not a directory\n")
    try:
        yield away
    finally:
        bronze.unlink()
        away.rename(bronze)


# -- Outage: what the log says -----------------------------------------------------------------


def test_an_outage_is_logged_once_with_reminders_and_its_end(caplog):
    clock = FakeClock()
    outage = Outage("bronze storage /lake", clock=clock, remind_every=30.0, consequence="waiting")
    with caplog.at_level(logging.INFO, logger="streams"):
        for _ in range(100):  # a hundred failed attempts in the first seconds: one line
            outage.failed(OSError("No space left on device"), ("t", 0), "t[0]@5")
            clock.now += 0.1
        outage.failed(OSError("still full"), ("t", 1))
        clock.now += 30.0
        outage.failed(OSError("still full"), ("t", 0))  # 30 s later: one reminder
        outage.failed(OSError("still full"), ("t", 0))
        outage.cleared(("t", 0))
        assert outage.ongoing  # t[1] still fails
        outage.cleared(("t", 1))
        outage.cleared(("t", 1))  # nothing failing: no second "available again"
        outage.failed(OSError("gone again"), ("t", 0))  # a new episode
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["ERROR", "WARNING", "WARNING", "ERROR"]
    assert "bronze storage /lake unavailable (t[0]@5): No space left on device" in lines[0][1]
    assert "waiting" in lines[0][1]
    assert "still unavailable after 40s and 102 failed attempts" in lines[1][1]
    assert "available again after 40.0s and 103 failed attempts" in lines[2][1]
    assert outage.episodes == 2


# -- BronzeWorker against a real filesystem fault ----------------------------------------------


def make_worker(lake: LakeStorage, clock: FakeClock, **kwargs: Any) -> BronzeWorker:
    options = {"flush_rows": 2, "flush_seconds": 5.0, **kwargs}
    return BronzeWorker(lake, topic_prefix="binlake", clock=clock, **options)


def test_an_unwritable_bronze_dir_is_retriable_and_nothing_is_lost(tmp_path, dbz, caplog):
    orders = dbz.table()
    lake_dir = tmp_path / "lake"
    lake = LakeStorage.from_url(str(lake_dir))
    clock = FakeClock()
    worker = make_worker(lake, clock)

    def record(offset: int, partition: int = 0) -> KafkaRecord:
        kv = orders.change("c", offset)
        return KafkaRecord(orders.topic, partition, offset, *kv, TS_MS, token=(partition, offset))

    released = worker.handle(record(0)).tokens + worker.handle(record(1)).tokens
    assert released == [(0, 0), (0, 1)]
    with caplog.at_level(logging.INFO, logger="streams"), bronze_replaced_by_a_file(lake_dir):
        assert worker.handle(record(2)).tokens == []  # buffered
        assert worker.handle(record(3)).tokens == []  # buffered; its flush failed, stays due
        for _ in range(5):  # retried by the caller with nothing changed, never a partition failure
            with pytest.raises(StorageUnavailableError):
                worker.handle(record(4))
        # A partition assigned now needs the manifest, which cannot be read now.
        worker.assigned([(orders.topic, 1)])
        with pytest.raises(StorageUnavailableError, match="manifest"):
            worker.handle(record(0, partition=1))
        for _ in range(20):  # the age-rotation timer keeps failing too
            clock.now += 1.0
            assert worker.tick().tokens == []
        assert not worker.failed
    released = worker.handle(record(4)).tokens
    released += worker.handle(record(0, partition=1)).tokens
    released += worker.close().tokens
    assert released == [(0, 2), (0, 3), (0, 4), (1, 0)]
    assert bronze_offsets(lake) == Counter({(0, o): 1 for o in range(5)} | {(1, 0): 1})
    outage_lines = [r.getMessage() for r in caplog.records if "bronze storage" in r.getMessage()]
    assert len([m for m in outage_lines if " unavailable" in m]) == 1, outage_lines


# -- the Faust runtime: nothing acked during the outage ----------------------------------------


@pytest.fixture
def app(tmp_path: Path, dbz) -> BronzeApp:
    return in_memory_app(tmp_path, FakeClock(), dbz.table().topic, flush_rows=1)


def test_the_agent_acks_nothing_while_bronze_is_unwritable(app, tmp_path, dbz, monkeypatch):
    monkeypatch.setattr("streams.app.RETRY_MIN_SECONDS", 0.005)
    monkeypatch.setattr("streams.app.RETRY_MAX_SECONDS", 0.02)
    orders = dbz.table()
    lake_dir = tmp_path / "lake"
    worker = app.bronze.worker
    events: list[Any] = []

    async def put(agent: Any, id_: int) -> Any:
        key, value = orders.change("c", id_)
        return await agent.put(value, key=key, partition=0, wait=False)

    async def scenario(agent: Any) -> None:
        events.append(await put(agent, 0))
        await until(lambda: events[0].message.acked, timeout=10.0)
        with bronze_replaced_by_a_file(lake_dir):
            for id_ in (1, 2, 3):
                events.append(await put(agent, id_))
            await until(lambda: worker.outage.failures >= 5, timeout=10.0)  # retrying, not skipping
            assert not any(e.message.acked for e in events[1:])
        await until(lambda: all(e.message.acked for e in events), timeout=10.0)
        assert not worker.outage.ongoing

    async def main() -> None:
        async with app.bronze.agent.test_context() as agent:
            await scenario(agent)

    asyncio.run(main())
    lake = LakeStorage.from_url(str(lake_dir))
    assert bronze_offsets(lake) == Counter({(0, o): 1 for o in range(4)})


# -- integration: the real worker against a real Kafka broker ----------------------------------


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

"""Backpressure: while the lake cannot be written, the worker waits, commits nothing it has not
made durable, says so in its log once (plus reminders), and loses nothing when the lake is back.

The fault is real and works as root (who ignores file permissions): the lake's `bronze`
directory is moved away and a regular *file* named `bronze` put in its place, so every write
and every manifest read below it fails with ENOTDIR/EEXIST until the directory is moved back.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from binlake.errors import StorageUnavailableError
from binlake.storage import LakeStorage
from streams.app import BronzeApp
from streams.bronze_worker import BronzeWorker, KafkaRecord
from streams.flush_policy import FlushPolicy
from streams.outage import Outage
from tests.support.agent import FakeClock, in_memory_app, until
from tests.support.lake_outage import bronze_replaced_by_a_file
from tests.support.worker import bronze_offsets

GROUP = "binlake-bronze"
TS_MS = 1_795_255_200_500


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
    flush = FlushPolicy(rows=kwargs.pop("flush_rows", 2), seconds=kwargs.pop("flush_seconds", 5.0))
    return BronzeWorker(lake, topic_prefix="binlake", clock=clock, flush_policy=flush, **kwargs)


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

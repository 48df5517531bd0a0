"""The Faust agent, driven through `agent.test_context()` (no broker), with real Debezium JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from faust.types import TP

from binlake.bronze.manifest import Manifest
from binlake.settings import load_settings
from binlake.storage import LakeStorage
from streams.app import BronzeApp, cdc_topic_pattern, create_app
from streams.dead_letter import dead_letter_path
from tests.support.agent import FakeClock, in_memory_app, put_changes_until_acked, run, until


@pytest.fixture
def lake_dir(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(tmp_path: Path, lake_dir: Path, clock: FakeClock, dbz) -> BronzeApp:
    return in_memory_app(tmp_path, clock, dbz.table().topic, flush_rows=3, lake_dir=lake_dir)


def manifest(lake_dir: Path) -> Manifest:
    return Manifest(LakeStorage.from_url(str(lake_dir)))


def test_agent_writes_bronze_and_acks_only_after_the_manifest(app, lake_dir, clock, dbz):
    orders = dbz.table()
    events: list[Any] = []

    async def scenario(agent: Any) -> None:
        for offset, (key, value) in enumerate(
            [orders.change("c", 1), orders.change("u", 1, qty=9), orders.change("d", 1)]
        ):
            events.append(await agent.put(value, key=key, partition=0))
            if offset < 2:
                await asyncio.sleep(0.01)
                assert not any(e.message.acked for e in events)  # still buffered
        await until(lambda: all(e.message.acked for e in events))
        [entry] = manifest(lake_dir).entries()
        assert (entry.first_offset, entry.last_offset, entry.rotation_reason) == (0, 2, "rows")

        # A tombstone then a bad record: buffered / dead-lettered, acked with the next file.
        key, value = orders.tombstone(1)
        events.append(await agent.put(value, key=key, partition=0, timestamp=1_795_255_230.0))
        events.append(await agent.put(b"not json", key=b"junk", partition=0))
        await until(lambda: (lake_dir / dead_letter_path(orders.topic, 0, 4)).exists())
        assert not events[3].message.acked and not events[4].message.acked

        # The timer rotates the file by age once flush_seconds have passed.
        clock.now += 59.0
        await app.bronze.on_tick()
        assert not events[3].message.acked
        clock.now += 1.0
        await app.bronze.on_tick()
        assert events[3].message.acked and events[4].message.acked

    run(app, scenario)
    entries = manifest(lake_dir).entries()
    assert [(e.first_offset, e.last_offset, e.rotation_reason) for e in entries] == [
        (0, 2, "rows"),
        (3, 3, "age"),
    ]
    table = pq.read_table(lake_dir / entries[0].path)
    assert table.column("_op").to_pylist() == ["c", "u", "d"]
    assert table.column("_topic").to_pylist() == [orders.topic] * 3
    letter = json.loads((lake_dir / dead_letter_path(orders.topic, 0, 4)).read_text())
    assert letter["value_b64"] == "bm90IGpzb24="  # b"not json"


def test_revocation_and_shutdown_flush_and_ack(app, lake_dir, dbz):
    orders = dbz.table()
    events: list[Any] = []

    async def scenario(agent: Any) -> None:
        for partition in (0, 1):
            key, value = orders.change("c", 10 + partition)
            events.append(await agent.put(value, key=key, partition=partition))
        await until(lambda: len(app.bronze.worker.writers) == 2)
        await app.bronze.on_partitions_revoked(app, {TP(orders.topic, 0)})
        assert events[0].message.acked and not events[1].message.acked
        await app.bronze.on_before_shutdown(app)
        assert events[1].message.acked

    run(app, scenario)
    reasons = {e.partition: e.rotation_reason for e in manifest(lake_dir).entries()}
    assert reasons == {0: "partition_revoked", 1: "shutdown"}


def test_records_already_in_bronze_are_acked_without_rewriting(app, lake_dir, dbz):
    orders = dbz.table()

    async def first(agent: Any) -> None:
        for i in range(3):
            key, value = orders.change("c", i)
            await agent.put(value, key=key, partition=0)
        await until(lambda: len(manifest(lake_dir).entries()) == 1)

    run(app, first)
    # A second run sees offsets 0.. again (e.g. the commit was lost): they are acked, not written.
    app.bronze.worker.assigned([])
    app.bronze.worker.writers.clear()

    async def again(agent: Any) -> None:
        await put_changes_until_acked(agent, orders, range(3))

    run(app, again)
    assert len(manifest(lake_dir).entries()) == 1


def test_the_agent_reads_every_cdc_topic_and_nothing_else():
    pattern = cdc_topic_pattern("binlake")
    assert pattern.match("binlake.shop.orders")
    assert pattern.match("binlake.shop.order_items")
    for other in (
        "binlake",
        "binlake.shop",
        "binlake.a.b.c",
        "binlakex.shop.t",
        "x.binlake.shop.t",
        "binlake-bronze-__assignor-__leader",
        "binlake.schema-changes",
    ):
        assert not pattern.match(other), other
    assert cdc_topic_pattern("a-b_c").match("a-b_c.db.t")
    assert not cdc_topic_pattern("a.b").match("aXb.db.t")  # the prefix is escaped


def test_discovered_topics_are_shared_by_every_clone_of_the_topic(app, dbz):
    channel = app.bronze.agent.channel
    clone = channel.clone()
    app.bronze.directory.offer(["binlake.shop.customers", "binlake", "unrelated.x.y"])
    assert list(clone.topics) == ["binlake.shop.customers", dbz.table().topic]
    assert channel.pattern is None  # Faust's own pattern subscription is not used


def test_app_configuration(app, tmp_path):
    conf = app.conf
    assert conf.broker_session_timeout == 10
    assert conf.stream_wait_empty is False
    assert conf.web_enabled is False
    assert conf.broker_commit_interval == 1.0
    assert str(conf.broker[0]) == "kafka://127.0.0.1:19092"
    assert Path(conf.datadir) == (tmp_path / "state" / "faust").resolve()


def test_storage_outages_are_waited_out_without_skipping(app, lake_dir, dbz, monkeypatch):
    from binlake.errors import StorageUnavailableError

    monkeypatch.setattr("streams.app.RETRY_MIN_SECONDS", 0.001)
    worker = app.bronze.worker
    real_handle = worker.handle
    failures = []

    def flaky(record):
        if len(failures) < 3:
            failures.append(record.offset)
            raise StorageUnavailableError("lake is away")
        return real_handle(record)

    monkeypatch.setattr(worker, "handle", flaky)
    orders = dbz.table()

    async def scenario(agent: Any) -> None:
        await put_changes_until_acked(agent, orders, range(3))

    run(app, scenario)
    assert failures == [0, 0, 0]
    [entry] = manifest(lake_dir).entries()
    assert (entry.first_offset, entry.last_offset) == (0, 2)


def test_an_unexpected_error_stops_the_agent_instead_of_skipping(app, dbz, monkeypatch):
    def broken(record):
        raise RuntimeError("bug")

    monkeypatch.setattr(app.bronze.worker, "handle", broken)
    orders = dbz.table()

    async def scenario(agent: Any) -> None:
        key, value = orders.change("c", 1)
        with pytest.raises(RuntimeError, match="bug"):
            await agent.put(value, key=key, partition=0)

    run(app, scenario)


def test_broker_list_and_worker_command_line(monkeypatch, tmp_path):
    import streams.app as module

    assert module.broker_urls("a:1, b:2") == ["kafka://a:1", "kafka://b:2"]
    app = create_app(
        load_settings(kafka={"bootstrap_servers": "h1:9092,h2:9093"}, state_dir=tmp_path)
    )
    assert [str(url) for url in app.conf.broker] == ["kafka://h1:9092", "kafka://h2:9093"]

    seen = []
    monkeypatch.setattr(module.app, "main", lambda: seen.append(list(module.sys.argv[1:])))
    monkeypatch.setattr(module.sys, "argv", ["binlake", "worker"])
    module.main()
    assert seen == [["worker", "-l", "info", "--without-web"]]


def test_a_record_revoked_while_retrying_is_dropped_not_written(app, lake_dir, dbz, monkeypatch):
    from binlake.errors import StorageUnavailableError

    monkeypatch.setattr("streams.app.RETRY_MIN_SECONDS", 0.01)
    worker = app.bronze.worker
    real_handle = worker.handle
    outage = [True]

    def flaky(record):
        if outage[0]:
            raise StorageUnavailableError("lake is away")
        return real_handle(record)

    monkeypatch.setattr(worker, "handle", flaky)
    orders = dbz.table()

    async def scenario(agent: Any) -> None:
        key, value = orders.change("c", 1)
        first = await agent.put(value, key=key, partition=0)
        await asyncio.sleep(0.05)  # the agent is retrying
        await app.bronze.on_partitions_revoked(app, {TP(orders.topic, 0)})
        outage[0] = False
        key, value = orders.change("c", 2)
        second = await agent.put(value, key=key, partition=1)
        await until(lambda: (orders.topic, 1) in worker.writers)
        assert not first.message.acked and (orders.topic, 0) not in worker.writers
        await app.bronze.on_before_shutdown(app)
        assert second.message.acked and not first.message.acked

    run(app, scenario)
    assert [e.partition for e in manifest(lake_dir).entries()] == [1]

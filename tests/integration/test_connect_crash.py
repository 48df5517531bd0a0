"""Kafka Connect SIGKILLed while a bulk insert runs: silver equals the source value for value,
with exactly-once source delivery (KIP-618) and without; with it, no change reaches a
read_committed reader twice.

A local stack of its own per mode (MariaDB, a KRaft broker, Kafka Connect + Debezium's MariaDB
connector, the bronze worker, Dagster), capturing one table, `crashdb.events`. While a thread
inserts rows in batches, the Connect JVM (its PID from supervisord's process table, nothing else)
gets SIGKILL; supervisord restarts it (`autorestart=unexpected`: death by a signal is unexpected)
and Debezium resumes from the last source offset Connect had committed.

* Exactly-once (`connect.exactly_once`, the default): Debezium's records and its source offsets
  commit in one Kafka transaction; what the killed worker had sent since is in a transaction that
  never commits, so a read_committed reader (the bronze worker) gets each change once.
* At-least-once: a re-sent change is a new Kafka record (a new offset) holding the same change
  (same `_source_file`, `_source_pos`, `_source_row`, key and values); silver drops the copies.

Either way bronze holds exactly the records a read_committed reader gets (offsets have gaps with
transactions: a commit marker takes an offset, aborted records are skipped). The number of
re-sent records is measured by benchmarks/exactly_once.py, not asserted here.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import polars as pl
import pytest

from binlake.bronze.layout import OFFSET, OP, PARTITION, TOPIC
from binlake.demo.delivery_checks import SOURCE_POSITION, copies, read_topic
from binlake.local_stack import components
from binlake.local_stack.stack import LocalStack
from binlake.source_db import connect_source
from tests.support.stack import (
    assert_silver_equals_source,
    bronze_rows,
    component,
    stack_of_tables,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

DB = "crashdb"
TABLE = f"{DB}.events"
BATCHES = 60
ROWS_PER_BATCH = 1000


@pytest.fixture(scope="module", params=[True, False], ids=["exactly-once", "at-least-once"])
def crash_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    yield from stack_of_tables(
        tmp_path_factory,
        "connect-crash",
        [TABLE],
        mysql={"databases": [DB]},
        connect={"exactly_once": request.param},
        bronze={"flush_seconds": 1.0, "flush_rows": 5000},
    )


def bulk_insert_while(stack: LocalStack, during) -> float:
    """Insert BATCHES * ROWS_PER_BATCH rows into `events` (one transaction per batch) in a
    thread, calling `during()` once bronze holds the first of them; returns the insert's
    duration. `during` must find the insert still running."""
    settings = stack.settings
    inserted = threading.Event()
    errors: list[BaseException] = []

    def bulk_insert() -> None:
        try:
            with connect_source(settings, admin=True, database=DB) as conn, conn.cursor() as cur:
                for batch in range(BATCHES):
                    rows = [
                        (batch * ROWS_PER_BATCH + i, batch, f"row-{batch}-{i}")
                        for i in range(ROWS_PER_BATCH)
                    ]
                    cur.executemany("INSERT INTO events VALUES (%s, %s, %s, NOW(6))", rows)
                    time.sleep(0.25)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)
        finally:
            inserted.set()

    began = time.monotonic()
    inserter = threading.Thread(target=bulk_insert, name="bulk-insert", daemon=True)
    inserter.start()
    try:
        wait_for("first rows of the insert in bronze", lambda: bronze_rows(settings, TABLE).height)
        assert not inserted.is_set(), "the insert finished before the crash"
        during()
    finally:
        inserter.join(300)
    assert not errors, errors
    assert inserted.is_set() and not inserter.is_alive()
    return time.monotonic() - began


def test_connect_sigkill_during_bulk_insert_keeps_silver_exact(crash_stack: LocalStack) -> None:
    stack = crash_stack
    settings = stack.settings
    exactly_once = settings.connect.exactly_once
    topic = settings.topic_for(TABLE)
    with connect_source(settings, admin=True, database=DB) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE events (id BIGINT PRIMARY KEY, batch INT NOT NULL, "
            "payload VARCHAR(64) NOT NULL, created_at DATETIME(6) NOT NULL)"
        )

    before = component(stack, components.CONNECT)
    assert before.state == "RUNNING" and before.pid

    def kill_connect() -> None:
        rows_before_kill = bronze_rows(settings, TABLE).height
        os.kill(before.pid, signal.SIGKILL)  # the Connect JVM supervisord started; nothing else
        print(f"\nSIGKILL Connect pid {before.pid}, bronze had {rows_before_kill} rows")

    insert_s = bulk_insert_while(stack, kill_connect)
    wait_for(
        "supervisord to restart Connect",
        lambda: (
            (s := component(stack, components.CONNECT)).state == "RUNNING" and s.pid != before.pid
        ),
        60,
    )
    supervisor_log = stack.supervisor.log_file("supervisord").read_text()
    assert "connect (terminated by SIGKILL; not expected)" in supervisor_log
    total = BATCHES * ROWS_PER_BATCH
    print(f"insert of {total} rows took {insert_s:.1f}s (exactly_once={exactly_once})")

    began = time.monotonic()
    wait_for(
        "every inserted row in bronze",
        lambda: bronze_rows(settings, TABLE)["id"].n_unique() == total,
        timeout_s=400,
    )
    # Debezium re-sends before it sends anything new, so once the last new row is in bronze
    # every re-sent record (a lower offset) is too.
    bronze = bronze_rows(settings, TABLE)
    print(f"bronze complete {time.monotonic() - began:.1f}s later: {bronze.height} rows")

    committed = read_topic(settings.kafka.bootstrap_servers, topic, "read_committed")
    uncommitted = read_topic(settings.kafka.bootstrap_servers, topic, "read_uncommitted")
    print(f"read_committed reader: {copies(committed).describe()}")
    print(f"read_uncommitted reader: {copies(uncommitted).describe()}")
    print(f"bronze: {copies(bronze, ['id']).describe()}")

    # Bronze holds each Kafka record a read_committed reader gets, once, and no other.
    assert bronze[TOPIC].unique().to_list() == [topic]
    assert bronze.select(TOPIC, PARTITION, OFFSET).is_duplicated().sum() == 0
    assert sorted(bronze.select(PARTITION, OFFSET).rows()) == sorted(
        committed.select(PARTITION, OFFSET).rows()
    )
    # Every inserted row, only inserts; copies at one binlog position are the same change.
    assert set(bronze["id"].to_list()) == set(range(total))
    assert bronze[OP].unique().to_list() == ["c"]
    by_position = bronze.group_by(SOURCE_POSITION).agg(
        pl.col("id").n_unique().alias("ids"),
        pl.col("payload").n_unique().alias("payloads"),
        pl.col("created_at").n_unique().alias("created"),
    )
    assert by_position.height == total, "a binlog position holds two rows, or a row two"
    assert (by_position["ids"] == 1).all() and (by_position["payloads"] == 1).all()
    assert (by_position["created"] == 1).all()
    if exactly_once:
        # The guarantee: what the killed worker sent was never committed.
        assert copies(committed).resent == 0
        assert copies(bronze, ["id"]).resent == 0 and bronze.height == total

    assert_silver_equals_source(settings, TABLE)

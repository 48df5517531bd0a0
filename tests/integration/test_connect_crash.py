"""Kafka Connect SIGKILLed while a bulk insert runs: bronze loses nothing and keeps each Kafka
record once; the changes Debezium sends again are recognisable by their binlog position.

A local stack of its own (MariaDB, Tansu, Kafka Connect + Debezium, the bronze worker; no
Dagster), capturing one table, `crashdb.events`. While a thread inserts rows in batches, the
Connect JVM (its PID from supervisord's process table, nothing else) gets SIGKILL; supervisord
restarts it (`autorestart=unexpected`: death by a signal is unexpected) and Debezium resumes
from the last source offset Connect had flushed, re-sending what it had sent since.

Kafka Connect is at-least-once: a re-sent change is a new Kafka record (a new offset) holding
the same change. So bronze must hold
* every Kafka record of the topic exactly once (offsets 0..N-1, no gap, no repeat), and
* every inserted row at least once; rows that are there more than once must be the same change
  (same `_source_file`, `_source_pos`, `_source_row`, key and values), so silver can drop them.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import polars as pl
import pytest

from binlake.bronze_layout import OFFSET, PARTITION, SOURCE_FILE, SOURCE_POS, SOURCE_ROW, TOPIC
from binlake.local_stack import components
from binlake.local_stack.stack import LocalStack
from binlake.manifest import Manifest
from binlake.settings import load_settings
from binlake.source_db import connect_source
from binlake.storage import LakeStorage

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

DB = "crashdb"
TABLE = f"{DB}.events"
BATCHES = 60
ROWS_PER_BATCH = 1000
POSITION = [SOURCE_FILE, SOURCE_POS, SOURCE_ROW]


@pytest.fixture(scope="module")
def crash_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    settings = load_settings(
        state_dir=tmp_path_factory.mktemp("connect-crash"),
        tables=[TABLE],
        mysql={"port": 0, "databases": [DB]},
        kafka={"bootstrap_servers": "127.0.0.1:0"},
        connect={"url": "http://127.0.0.1:0"},
        dagster={"port": 0},
        bronze={"flush_seconds": 1.0, "flush_rows": 5000},
    )
    stack = LocalStack(settings)
    try:
        stack.up(with_dagster=False)
        yield stack
    finally:
        stack.down()


def _connect_state(stack: LocalStack):
    return next(s for s in stack.components() if s.name == components.CONNECT)


def _bronze(stack: LocalStack) -> pl.DataFrame:
    storage = LakeStorage.from_url(stack.settings.lake_url)
    frames = [
        pl.read_parquet(storage.full_path(entry.path))
        for entry in Manifest(storage).entries_for(TABLE)
    ]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _wait_for(what: str, condition, timeout_s: float) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"{what}: not reached after {timeout_s} s")
        time.sleep(0.5)
    return time.monotonic() - start


def test_connect_sigkill_during_bulk_insert_loses_nothing(crash_stack: LocalStack) -> None:
    stack = crash_stack
    settings = stack.settings
    topic = settings.topic_for(TABLE)
    with connect_source(settings, admin=True, database=DB) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE events (id BIGINT PRIMARY KEY, batch INT NOT NULL, "
            "payload VARCHAR(64) NOT NULL, created_at DATETIME(6) NOT NULL)"
        )

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
                    cur.executemany(
                        "INSERT INTO events VALUES (%s, %s, %s, NOW(6))", rows
                    )  # autocommit: one transaction per batch
                    time.sleep(0.25)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)
        finally:
            inserted.set()

    before = _connect_state(stack)
    assert before.state == "RUNNING" and before.pid
    began = time.monotonic()
    inserter = threading.Thread(target=bulk_insert, name="bulk-insert", daemon=True)
    inserter.start()
    try:
        # Kill once Debezium is streaming the insert into Kafka (bronze has some of it) and
        # the insert is still running.
        _wait_for("first rows of the insert in bronze", lambda: _bronze(stack).height > 0, 120)
        assert not inserted.is_set(), "the insert finished before Connect could be killed"
        rows_before_kill = _bronze(stack).height
        os.kill(before.pid, signal.SIGKILL)  # the Connect JVM supervisord started; nothing else
        killed_at = time.monotonic() - began
        print(
            f"\nSIGKILL Connect pid {before.pid} at {killed_at:.1f}s, bronze had "
            f"{rows_before_kill} rows"
        )

        restarted = _wait_for(
            "supervisord to restart Connect",
            lambda: (s := _connect_state(stack)).state == "RUNNING" and s.pid != before.pid,
            60,
        )
    finally:
        inserter.join(120)
    assert not errors, errors
    assert inserted.is_set() and not inserter.is_alive()
    supervisor_log = stack.supervisor.log_file("supervisord").read_text()
    assert "connect (terminated by SIGKILL; not expected)" in supervisor_log
    total = BATCHES * ROWS_PER_BATCH
    print(
        f"Connect running again (pid {_connect_state(stack).pid}) {restarted:.1f}s after the "
        f"kill; insert of {total} rows done at {time.monotonic() - began:.1f}s"
    )

    def every_row_in_bronze() -> bool:
        bronze = _bronze(stack)
        return bronze.height > 0 and bronze["id"].n_unique() == total

    caught_up = _wait_for("every inserted row in bronze", every_row_in_bronze, 300)
    # Debezium re-sends before it sends anything new, so once the last new row is in bronze
    # every re-sent record (a lower offset) must be too: the offset check below sees them all.
    bronze = _bronze(stack)
    print(f"bronze complete {caught_up:.1f}s after the insert: {bronze.height} rows")

    # Each Kafka record exactly once: the topic's offsets 0..N-1, none twice.
    assert bronze[TOPIC].unique().to_list() == [topic]
    keys = bronze.select(TOPIC, PARTITION, OFFSET)
    assert keys.is_duplicated().sum() == 0, "a Kafka record is in bronze twice"
    for (partition,), part in bronze.group_by(PARTITION):
        offsets = part[OFFSET].sort().to_list()
        assert offsets == list(range(len(offsets))), f"gap in partition {partition}"

    # Every inserted row at least once, and only inserts.
    assert set(bronze["id"].to_list()) == set(range(total))
    assert bronze["_op"].unique().to_list() == ["c"]

    # Re-sent changes are recognisable: one binlog position is one row's change, whatever
    # Kafka offsets it got; copies at one position are the same change.
    by_position = bronze.group_by(POSITION).agg(
        pl.len().alias("copies"),
        pl.col("id").n_unique().alias("ids"),
        pl.col("payload").n_unique().alias("payloads"),
        pl.col("created_at").n_unique().alias("created"),
    )
    assert by_position.height == total, "a binlog position holds two rows, or a row two"
    assert (by_position["ids"] == 1).all() and (by_position["payloads"] == 1).all()
    assert (by_position["created"] == 1).all()
    duplicates = bronze.group_by([*POSITION, "id"]).len().filter(pl.col("len") > 1)
    resent = int(duplicates["len"].sum() - duplicates.height) if duplicates.height else 0
    print(
        f"Debezium re-sent {resent} changes after the crash ({duplicates.height} rows present "
        f"more than once, grouped by (_source_file, _source_pos, _source_row, id)); "
        f"{bronze.height} bronze rows = {total} inserted + {resent} re-sent"
    )
    assert bronze.height == total + resent

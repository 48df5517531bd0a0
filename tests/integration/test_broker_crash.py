"""The Kafka broker SIGKILLed and restarted while rows are inserted, updated and deleted: silver
equals the source value for value, and bronze holds each source change once.

A local stack of its own (MariaDB, the KRaft broker, Kafka Connect + Debezium with exactly-once
source delivery, the bronze worker, Dagster), capturing `brokerdb.items`. A writer thread runs
single-row INSERT, UPDATE and DELETE statements (one transaction each) the whole time; the broker
JVM (its PID from supervisord's process table, nothing else) gets SIGKILL mid-stream and
supervisord starts it again (`autorestart=unexpected`: death by a signal is unexpected) on the
same port, with the same data directory. Debezium and the bronze worker reconnect on their own;
nothing is restarted by hand.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from binlake.bronze.layout import OFFSET, OP, PARTITION, TOPIC
from binlake.demo.delivery_checks import copies, read_topic
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

DB = "brokerdb"
TABLE = f"{DB}.items"
WRITES_PER_S = 40
WRITE_AFTER_RESTART_S = 15


@pytest.fixture(scope="module")
def broker_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    yield from stack_of_tables(
        tmp_path_factory,
        "broker-crash",
        [TABLE],
        mysql={"databases": [DB]},
        bronze={"flush_seconds": 1.0},
    )


class Writer:
    """Single-row inserts, updates and deletes, one transaction each, until stopped; counts the
    row changes it made (each one binlog row event, so one change record in Kafka)."""

    def __init__(self, stack: LocalStack):
        self.settings = stack.settings
        self.stop = threading.Event()
        self.changes = {"c": 0, "u": 0, "d": 0}
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def _run(self) -> None:
        rng = random.Random(12)
        live: list[int] = []
        next_id = 1
        try:
            with (
                connect_source(self.settings, admin=True, database=DB) as conn,
                conn.cursor() as cur,
            ):
                while not self.stop.is_set():
                    choice = rng.random()
                    if len(live) < 20 or choice < 0.5:
                        cur.execute(
                            "INSERT INTO items VALUES (%s, %s, %s, NOW(6))",
                            (next_id, rng.randint(0, 10**6), f"item-{next_id}"),
                        )
                        live.append(next_id)
                        next_id += 1
                        op = "c"
                    elif choice < 0.85:
                        key = rng.choice(live)
                        cur.execute(
                            "UPDATE items SET n = n + 1, label = %s, changed_at = NOW(6) "
                            "WHERE id = %s",
                            (f"item-{key}-{rng.randint(0, 10**6)}", key),
                        )
                        op = "u"
                    else:
                        key = live.pop(rng.randrange(len(live)))
                        cur.execute("DELETE FROM items WHERE id = %s", (key,))
                        op = "d"
                    assert cur.rowcount == 1, (op, cur.rowcount)
                    self.changes[op] += 1
                    time.sleep(1 / WRITES_PER_S)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.errors.append(exc)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.errors, self.errors
        assert not self.thread.is_alive()


def test_broker_sigkill_mid_stream_loses_and_duplicates_nothing(broker_stack: LocalStack) -> None:
    stack = broker_stack
    settings = stack.settings
    topic = settings.topic_for(TABLE)
    with connect_source(settings, admin=True, database=DB) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE items (id BIGINT PRIMARY KEY, n INT NOT NULL, "
            "label VARCHAR(64) NOT NULL, changed_at DATETIME(6) NOT NULL)"
        )

    writer = Writer(stack)
    writer.thread.start()
    try:
        wait_for("first changes in bronze", lambda: bronze_rows(settings, TABLE).height >= 50)
        before = component(stack, components.BROKER)
        assert before.state == "RUNNING" and before.pid
        os.kill(before.pid, signal.SIGKILL)  # the broker JVM supervisord started; nothing else
        killed = time.monotonic()
        print(f"\nSIGKILL broker pid {before.pid} after {sum(writer.changes.values())} changes")
        wait_for(
            "supervisord to restart the broker",
            lambda: (
                (s := component(stack, components.BROKER)).state == "RUNNING"
                and s.pid != before.pid
            ),
            60,
        )
        print(f"broker running again after {time.monotonic() - killed:.1f}s")
        time.sleep(WRITE_AFTER_RESTART_S)
    finally:
        writer.finish()
    supervisor_log = stack.supervisor.log_file("supervisord").read_text()
    assert "broker (terminated by SIGKILL; not expected)" in supervisor_log
    made = sum(writer.changes.values())
    print(f"writer made {writer.changes} = {made} row changes")

    wait_for(
        "every change in bronze",
        lambda: copies(bronze_rows(settings, TABLE), ["id"]).changes >= made,
        timeout_s=400,
    )
    assert_silver_equals_source(settings, TABLE)

    bronze = bronze_rows(settings, TABLE)
    in_bronze = copies(bronze, ["id"])
    print(f"bronze: {in_bronze.describe()}")
    # Each source change once: as many change records as the writer made changes, no copies.
    assert in_bronze.resent == 0
    assert in_bronze.records == made
    for op, count in writer.changes.items():
        assert bronze.filter(bronze[OP] == op).height == count, op
    assert in_bronze.tombstones == writer.changes["d"]  # each delete's tombstone, once
    # Each Kafka record a read_committed reader gets, once, and no other.
    committed = read_topic(settings.kafka.bootstrap_servers, topic, "read_committed")
    assert bronze[TOPIC].unique().to_list() == [topic]
    assert bronze.select(TOPIC, PARTITION, OFFSET).is_duplicated().sum() == 0
    assert sorted(bronze.select(PARTITION, OFFSET).rows()) == sorted(
        committed.select(PARTITION, OFFSET).rows()
    )

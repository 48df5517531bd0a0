"""Restarts of the capture: the first change after each one is captured, and `binlake down` then
`up` continues the same lake.

The MariaDB restart case: with Debezium's MySQL connector reading MariaDB behind a MySQL version
string, the first change after a restart (the first event after the stored source offset) was
skipped, every time. The local stack now captures MariaDB with Debezium's MariaDB connector; this
module restarts the capture three ways and checks the change made right after each is in bronze:

* the connector and its task restarted over Connect's REST API,
* the Connect worker stopped by SIGTERM (its PID from supervisord) and started again by
  supervisord, with a change made while it is down,
* `binlake down` and `binlake up` (the commands a user runs): the broker keeps its data, so the
  connector resumes from its stored offset (no new snapshot: no `r` record), the bronze worker
  from its committed offsets (bronze offsets continue), and nothing is written twice.

A local stack of its own (no Dagster), capturing `restartdb.notes`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from binlake.bronze.layout import OFFSET, OP, PARTITION, TOPIC
from binlake.demo.delivery_checks import copies, read_topic
from binlake.local_stack import components
from binlake.local_stack.stack import LocalStack
from binlake.source_db import connect_source
from cdc.connect_client import ConnectClient
from tests.support.stack import bronze_rows, component, integration_settings, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

DB = "restartdb"
TABLE = f"{DB}.notes"


@pytest.fixture(scope="module")
def restart_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    settings = integration_settings(
        tmp_path_factory.mktemp("restarts"),
        tables=[TABLE],
        mysql={"databases": [DB]},
        bronze={"flush_seconds": 1.0},
    )
    stack = LocalStack(settings)
    try:
        stack.up(with_dagster=False)
        yield stack
    finally:
        LocalStack(settings).down()


class Notes:
    """Writes to `notes`; each write is one row change, counted."""

    def __init__(self, stack: LocalStack):
        self.settings = stack.settings
        self.next_id = 1
        self.changes = 0

    def insert(self, body: str) -> int:
        note = self.next_id
        with connect_source(self.settings, admin=True, database=DB) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO notes VALUES (%s, %s)", (note, body))
        self.next_id += 1
        self.changes += 1
        return note

    def update(self, note: int, body: str) -> None:
        with connect_source(self.settings, admin=True, database=DB) as conn, conn.cursor() as cur:
            cur.execute("UPDATE notes SET body = %s WHERE id = %s", (body, note))
            assert cur.rowcount == 1
        self.changes += 1


def _in_bronze(settings, note: int, body: str) -> bool:
    bronze = bronze_rows(settings, TABLE)
    return bool(bronze.height) and (note, body) in set(bronze.select("id", "body").rows())


def _wait_in_bronze(settings, note: int, body: str, why: str) -> None:
    wait_for(f"{why}: note {note} {body!r} in bronze", lambda: _in_bronze(settings, note, body))


def _binlake(settings, *args: str) -> None:
    """A `binlake` command as a user runs it, against this stack's state directory."""
    env = {**os.environ, **settings.env()}
    result = subprocess.run(
        [sys.executable, "-m", "binlake", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-3000:])


def test_first_change_after_each_restart_is_captured_and_down_up_continues_the_lake(
    restart_stack: LocalStack,
) -> None:
    stack = restart_stack
    settings = stack.settings
    topic = settings.topic_for(TABLE)
    with connect_source(settings, admin=True, database=DB) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE notes (id BIGINT PRIMARY KEY, body VARCHAR(64) NOT NULL)")
    notes = Notes(stack)
    first = notes.insert("before any restart")
    _wait_in_bronze(settings, first, "before any restart", "streaming")

    # 1. The connector and its task restarted over REST; the first change after it.
    connect = ConnectClient(settings.connect.url)
    connect.restart(settings.connect.connector_name, include_tasks=True)
    connect.wait_until_running(settings.connect.connector_name, timeout_s=120)
    after_rest = notes.insert("first after a REST restart")
    notes.update(first, "second after a REST restart")
    _wait_in_bronze(settings, after_rest, "first after a REST restart", "REST restart")
    _wait_in_bronze(settings, first, "second after a REST restart", "REST restart")

    # 2. The Connect worker stopped (SIGTERM to the PID supervisord started) and started again
    # by supervisord; the first change is made while it is down.
    worker = component(stack, components.CONNECT)
    os.kill(worker.pid, signal.SIGTERM)
    # Once the old worker is gone (supervisord has spawned the next), the change can only be
    # read by the new one, from the stored offset.
    wait_for(
        "the old Connect worker to exit",
        lambda: component(stack, components.CONNECT).pid not in (0, worker.pid),
        60,
    )
    while_down = notes.insert("first while Connect restarts")
    wait_for(
        "supervisord to start Connect again",
        lambda: component(stack, components.CONNECT).state == "RUNNING",
        60,
    )
    connect.wait_until_ready(timeout_s=120)
    connect.wait_until_running(settings.connect.connector_name, timeout_s=120)
    notes.update(while_down, "second after the worker restart")
    _wait_in_bronze(settings, while_down, "first while Connect restarts", "worker restart")
    _wait_in_bronze(settings, while_down, "second after the worker restart", "worker restart")

    # 3. `binlake down`, then `binlake up`: the same lake continues.
    before_down = bronze_rows(settings, TABLE)
    last_offset = before_down[OFFSET].max()
    _binlake(settings, "down")
    assert not stack.is_running()
    _binlake(settings, "up", "--no-dagster")
    settings = LocalStack(settings).settings  # the running stack's (same ports, same dirs)
    after_up = notes.insert("first after binlake up")
    notes.update(first, "second after binlake up")
    _wait_in_bronze(settings, after_up, "first after binlake up", "down/up")
    _wait_in_bronze(settings, first, "second after binlake up", "down/up")

    bronze = bronze_rows(settings, TABLE)
    new = bronze.filter(bronze[OFFSET] > last_offset)
    print(
        f"\nbronze: {before_down.height} rows up to offset {last_offset} before down, "
        f"{new.height} after up (offsets {new[OFFSET].min()}..{new[OFFSET].max()})"
    )
    # Nothing before the down written again, and nothing re-read by a snapshot.
    assert bronze.height == before_down.height + new.height
    assert new.height == 2 and set(new["id"].to_list()) == {after_up, first}
    assert "r" not in bronze[OP].to_list()
    committed = read_topic(settings.kafka.bootstrap_servers, topic, "read_committed")
    assert "r" not in committed[OP].to_list()
    # Each change once, each Kafka record once: exactly what a read_committed reader gets.
    in_bronze = copies(bronze, ["id"])
    assert in_bronze.resent == 0 and in_bronze.records == notes.changes, in_bronze.describe()
    assert bronze.select(TOPIC, PARTITION, OFFSET).is_duplicated().sum() == 0
    assert sorted(bronze.select(PARTITION, OFFSET).rows()) == sorted(
        committed.select(PARTITION, OFFSET).rows()
    )
    final = dict(bronze.sort(OFFSET).select("id", "body").rows())  # last change of each row
    with connect_source(settings, database=DB) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, body FROM notes")
        assert dict(cur.fetchall()) == final

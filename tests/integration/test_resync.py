"""Resync through the real stack: silver made to differ from the source behind the binlog's back,
then `binlake resync` (a Debezium incremental snapshot) while a writer keeps changing the table,
and silver equal to the source again, row for row and value for value, including the rows the
source lost that silver held (swept as tombstones).

Uses the shared edge-case stack (table shop.edge_resync). The table's size is
BINLAKE_TEST_RESYNC_ROWS (default 20,000); the resync rate (rows/s) is printed.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from datetime import datetime
from decimal import Decimal

import polars as pl
import pytest

from binlake.bronze.layout import OP, SOURCE_FILE, SOURCE_POS, SOURCE_SNAPSHOT, SOURCE_TS_MS
from binlake.bronze.manifest import Manifest
from binlake.demo import lake_checks
from binlake.local_stack.stack import LocalStack
from binlake.settings import Settings
from binlake.silver.delta_table import DELETED
from binlake.silver.resync import (
    INCREMENTAL,
    ResyncLog,
    ResyncState,
    resync_added_tables,
    resync_again_if_schema_unknown,
    wait_for_completion,
)
from binlake.source_db import connect_source
from binlake.storage import LakeStorage
from cdc.connect_client import ConnectClient
from cdc.connector_config import build_connector_config
from dagster_defs.resources import SilverLake
from dagster_defs.resync.jobs import RESYNC_JOB_NAME, resync_run_tags
from tests.support.dagster_graphql import launch_run, run_status
from tests.support.stack import SourceWriter, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

TABLE = "shop.edge_resync"
ROWS = int(os.environ.get("BINLAKE_TEST_RESYNC_ROWS", "20000"))
# Rows changed behind the binlog's back (sql_log_bin=0): the stream never sees these.
SILENT_DELETES = list(range(5, ROWS, 97))
SILENT_UPDATES = list(range(7, ROWS, 89))
SILENT_INSERTS = list(range(ROWS + 1, ROWS + 101))
WRITER_FIRST_ID = ROWS + 10_000  # the background writer's own inserts


def _wait_until_swept_and_equal(settings: Settings, resync_id: str) -> None:
    """Until silver has swept the resync and equals the source."""
    wait_for(
        "silver swept the resync", lambda: _swept(settings, resync_id) is not None, 600, every_s=2
    )
    wait_for(
        "silver equals the source",
        lambda: lake_checks.silver_equals_source(settings, TABLE),
        600,
        every_s=2,
    )


def _row(i: int) -> tuple:
    return (i, f"name-{i}", i % 1000, Decimal(i % 10_000) + Decimal("0.25"))


class Writer(SourceWriter):
    """Inserts, updates and deletes rows of the table through the binlog until stopped."""

    def run(self) -> None:
        rng = random.Random(11)
        next_id = WRITER_FIRST_ID
        try:
            with (
                connect_source(self.settings, admin=True, database="shop") as conn,
                conn.cursor() as cur,
            ):
                while not self.stop.is_set():
                    cur.execute("INSERT INTO edge_resync VALUES (%s, %s, %s, %s)", _row(next_id))
                    next_id += 1
                    # keys the silent changes did not touch, so the expected sweep is exact
                    key = rng.randrange(1, ROWS)
                    if key % 97 != 5 and key % 89 != 7:
                        cur.execute(
                            "UPDATE edge_resync SET qty = qty + 1, name = %s WHERE id = %s",
                            (f"streamed-{next_id}", key),
                        )
                    if next_id % 5 == 0:
                        cur.execute("DELETE FROM edge_resync WHERE id = %s", (next_id - 3,))
                    self.changes += 1
                    time.sleep(0.02)
        except Exception as exc:  # noqa: BLE001 - reported by the test, in the main thread
            self.error = exc


def _source_rows(settings: Settings) -> list[tuple]:
    return lake_checks.source_table(settings, TABLE).sort("id").rows()


def _silver_rows(settings: Settings) -> list[tuple]:
    silver = lake_checks.silver_without_provenance(settings, TABLE).sort("id")
    return silver.select("id", "name", "qty", "price").rows()


def _swept(settings: Settings, resync_id: str) -> ResyncState | None:
    state = ResyncLog.of(settings).state(TABLE, resync_id)
    return state if state.sweep is not None else None


def _resync_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.env()}
    return subprocess.run(
        [sys.executable, "-m", "binlake", "resync", "--table", TABLE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def test_resync_heals_silver_including_rows_the_source_lost(edge_stack: LocalStack) -> None:
    settings = edge_stack.settings
    with connect_source(settings, admin=True, database="shop") as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE edge_resync (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, "
            "qty INT NOT NULL, price DECIMAL(10,2) NOT NULL)"
        )
        for first in range(1, ROWS + 1, 2000):
            batch = [_row(i) for i in range(first, min(first + 2000, ROWS + 1))]
            cur.executemany("INSERT INTO edge_resync VALUES (%s, %s, %s, %s)", batch)
    wait_for(
        "silver holds the table",
        lambda: lake_checks.silver_equals_source(settings, TABLE),
        900,
        every_s=2,
    )

    # Silver diverges: the binlog never sees these (as a restore or a manual fix would do).
    with connect_source(settings, admin=True, database="shop") as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.executemany("DELETE FROM edge_resync WHERE id = %s", SILENT_DELETES)
        cur.executemany(
            "UPDATE edge_resync SET name = 'silently-updated', price = 1.50 WHERE id = %s",
            SILENT_UPDATES,
        )
        cur.executemany(
            "INSERT INTO edge_resync VALUES (%s, %s, %s, %s)", [_row(i) for i in SILENT_INSERTS]
        )
    assert not lake_checks.silver_equals_source(settings, TABLE)

    writer = Writer(settings)
    writer.start()
    try:
        began = time.monotonic()
        result = _resync_cli(settings)
        resync_seconds = time.monotonic() - began
        assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
        time.sleep(3)  # a few streamed changes after the resync's end, too
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert writer.error is None, writer.error
    assert writer.changes > 0

    [resync_id] = ResyncLog.of(settings).ids(TABLE)
    _wait_until_swept_and_equal(settings, resync_id)
    # Row for row, value for value.
    assert _silver_rows(settings) == _source_rows(settings)

    state = ResyncLog.of(settings).state(TABLE, resync_id)
    assert state.completion is not None and state.completion.succeeded
    assert state.sweep is not None
    # Exactly the rows deleted behind the binlog's back were swept (the writer's own deletes
    # reached silver through the stream).
    assert state.sweep.rows_tombstoned == len(SILENT_DELETES)
    silver = SilverLake(storage_url=settings.lake_url).table(TABLE).read_all()
    swept = silver.filter(pl.col("id").is_in(SILENT_DELETES))
    assert swept.height == len(SILENT_DELETES)
    assert swept[DELETED].all()
    position = state.request.signal_position
    assert swept[SOURCE_FILE].unique().to_list() == [position.file]
    assert swept[SOURCE_POS].unique().to_list() == [position.pos]

    # The re-read rows are in bronze as snapshot reads with full provenance.
    bronze = _bronze(settings)
    reads = bronze.filter((pl.col(OP) == "r") & (pl.col(SOURCE_SNAPSHOT) == INCREMENTAL))
    assert reads.height >= state.sweep.keys_seen > 0
    assert reads.select(SOURCE_FILE, SOURCE_POS, SOURCE_TS_MS).null_count().row(0) == (0, 0, 0)
    assert set(SILENT_INSERTS) <= set(reads["id"].to_list())
    assert not set(SILENT_DELETES) & set(reads["id"].to_list())

    rows = state.completion.rows_scanned or 0
    requested = datetime.fromisoformat(state.request.requested_at)
    completed = datetime.fromisoformat(state.completion.completed_at)
    in_kafka = datetime.fromisoformat(state.completion.in_kafka_at)
    debezium_seconds = (completed - requested).total_seconds()
    kafka_seconds = (in_kafka - requested).total_seconds()
    print(
        f"\nresync of {rows} rows: Debezium read them in {debezium_seconds:.1f} s, all in Kafka "
        f"after {kafka_seconds:.1f} s ({rows / max(kafka_seconds, 1e-3):.0f} rows/s), the command "
        f"took {resync_seconds:.1f} s; {writer.changes} writer transactions meanwhile; "
        f"{state.sweep.keys_seen} keys seen, {state.sweep.rows_tombstoned} rows swept"
    )
    # every re-read row was in Kafka before the end was recorded: the sweep saw them all
    assert state.sweep.keys_seen >= rows - 3 * writer.changes  # a write drops its key's read
    assert rows >= ROWS - len(SILENT_DELETES)


def test_resync_job_in_dagster_keeps_silver_equal(edge_stack: LocalStack) -> None:
    """The `table_resync` Dagster job, launched with its per-table tag, does what the command
    does; silver is still equal to the source after it."""
    settings = edge_stack.settings
    before = set(ResyncLog.of(settings).ids(TABLE))
    run_id = _launch_resync_job(edge_stack)
    wait_for(
        "the job succeeded", lambda: _run_status(edge_stack, run_id) == "SUCCESS", 900, every_s=2
    )
    [resync_id] = set(ResyncLog.of(settings).ids(TABLE)) - before
    _wait_until_swept_and_equal(settings, resync_id)
    assert _silver_rows(settings) == _source_rows(settings)
    state = ResyncLog.of(settings).state(TABLE, resync_id)
    assert state.request.reason == "integration test"
    assert state.sweep is not None and state.sweep.rows_tombstoned == 0  # nothing diverged


ADDED = "shop.edge_resync_added"


def test_a_table_added_to_the_connector_brings_its_existing_rows_alone(
    edge_stack: LocalStack,
) -> None:
    """What `binlake connector register` does when `tables` gained one: the connector captures
    it from now on, and a resync of that table alone brings the rows it had before."""
    settings = edge_stack.settings
    with connect_source(settings, admin=True, database="shop") as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE edge_resync_added (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, "
            "qty INT NOT NULL, price DECIMAL(10,2) NOT NULL)"
        )
        cur.executemany(
            "INSERT INTO edge_resync_added VALUES (%s, %s, %s, %s)",
            [_row(i) for i in range(1, 501)],
        )
    reads_before = _snapshot_reads(settings, TABLE)
    widened = settings.model_copy(update={"tables": [*settings.tables, ADDED]})
    name = settings.connect.connector_name
    with ConnectClient(settings.connect.url) as connect:
        previous = connect.get_config(name)
        config = build_connector_config(widened)
        try:
            assert connect.put_connector(name, config)
            connect.wait_until_running(name, timeout_s=120)
            requests = resync_added_tables(widened, previous, config)
            assert [r.table for r in requests] == [ADDED]
            completion = wait_for_completion(widened, requests[0], timeout_s=600)
            if completion.status == "UNKNOWN_SCHEMA":  # the old task read the signal
                state = ResyncLog.of(widened).state(ADDED, requests[0].id)
                again = resync_again_if_schema_unknown(widened, state)
                assert again is not None
                completion = wait_for_completion(widened, again, timeout_s=600)
            assert completion.succeeded and completion.rows_scanned == 500

            def added_rows() -> pl.DataFrame:
                return _snapshot_reads(settings, ADDED).sort("id")

            wait_for(
                "bronze holds the added table's rows",
                lambda: added_rows().height >= 500,
                300,
                every_s=2,
            )
        finally:
            assert previous is not None
            connect.put_connector(name, previous)
            connect.wait_until_running(name, timeout_s=120)
    source = lake_checks.source_table(settings, ADDED).sort("id").rows()
    assert added_rows().select("id", "name", "qty", "price").rows() == source
    # the other tables were not read again
    assert _snapshot_reads(settings, TABLE).height == reads_before.height


def _snapshot_reads(settings: Settings, table: str) -> pl.DataFrame:
    storage = LakeStorage.from_url(settings.lake_url)
    frames = [
        pl.read_parquet(storage.full_path(e.path))
        for e in Manifest(storage).entries_for(table)
        if e.is_file
    ]
    if not frames:
        return pl.DataFrame({"id": []}, schema={"id": pl.Int32})
    bronze = pl.concat(frames, how="diagonal_relaxed")
    return bronze.filter((pl.col(OP) == "r") & (pl.col(SOURCE_SNAPSHOT) == INCREMENTAL))


def _bronze(settings: Settings) -> pl.DataFrame:
    storage = LakeStorage.from_url(settings.lake_url)
    frames = [
        pl.read_parquet(storage.full_path(e.path))
        for e in Manifest(storage).entries_for(TABLE)
        if e.is_file
    ]
    return pl.concat(frames, how="diagonal_relaxed")


def _launch_resync_job(stack: LocalStack) -> str:
    return launch_run(
        stack,
        RESYNC_JOB_NAME,
        run_config={
            "ops": {"resync_table": {"config": {"table": TABLE, "reason": "integration test"}}}
        },
        tags=resync_run_tags(TABLE),
    )


def _run_status(stack: LocalStack, run_id: str) -> str:
    status = run_status(stack, run_id)
    assert status not in ("FAILURE", "CANCELED"), f"run {run_id} {status}"
    return status

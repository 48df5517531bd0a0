"""Schema drift through the real stack: DDL on MariaDB while inserts flow, captured by Debezium,
written by the Faust bronze worker, read by Dagster's silver and checked by the bronze check.

The session stack captures the four demo tables, and other tests insert fixed rows into them, so
altering them here would break those tests. This module starts its own stack whose settings
capture two tables of its own: both get bronze and silver assets, the bronze schema check and
eager automation, exactly as the demo tables do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow.parquet as pq
import pytest

from binlake.bronze.layout import OP, SOURCE_FILE, SOURCE_POS
from binlake.bronze.manifest import Manifest, ManifestEntry
from binlake.bronze.schema_drift import fingerprint, is_dropped, row_schema_of
from binlake.demo import lake_checks
from binlake.local_stack import components
from binlake.local_stack.stack import LocalStack
from binlake.settings import Settings
from binlake.silver.resync import ResyncLog
from binlake.silver.schema_guard import completed_resyncs
from binlake.source_db import connect_source
from binlake.storage import LakeStorage
from dagster_defs.bronze.checks import SCHEMA_CHECK, check_schema_versions
from dagster_defs.keys import bronze_key
from dagster_defs.resources import BronzeLake
from tests.support.dagster_graphql import launch_run
from tests.support.stack import SourceWriter, stack_of_tables, wait_for

pytestmark = pytest.mark.integration

WIDEN = "shop.drift_widen"
BREAK = "shop.drift_break"

# Each accepted DDL that changes the lake's schema starts the next schema version; the VARCHAR
# length change does not (the Arrow type stays string).
WIDEN_DDL = [
    ("ALTER TABLE drift_widen ADD COLUMN note VARCHAR(40) NULL", True),
    ("ALTER TABLE drift_widen MODIFY qty BIGINT NOT NULL", True),
    ("ALTER TABLE drift_widen MODIFY amount DECIMAL(12,4) NOT NULL", True),
    ("ALTER TABLE drift_widen MODIFY label VARCHAR(50) NOT NULL", False),
    ("ALTER TABLE drift_widen DROP COLUMN legacy", True),
]


@pytest.fixture(scope="module")
def drift_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    yield from stack_of_tables(tmp_path_factory, "drift-stack", [WIDEN, BREAK])


def _entries(settings: Settings, table: str) -> list[ManifestEntry]:
    return Manifest(LakeStorage.from_url(settings.lake_url)).entries_for(table)


def _bronze(settings: Settings, table: str) -> pl.DataFrame:
    """Every bronze row of `table`, each with the schema version of its file."""
    storage = LakeStorage.from_url(settings.lake_url)
    frames = [
        pl.read_parquet(storage.full_path(e.path)).with_columns(
            pl.lit(e.schema_version).alias("_schema_version")
        )
        for e in _entries(settings, table)
    ]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _changes_in_bronze(settings: Settings, table: str) -> int:
    bronze = _bronze(settings, table)
    return bronze.filter(pl.col(OP) != "x").height if bronze.height else 0


def _binlog_position_of(cur, statement: str) -> tuple[str, int]:
    """(binlog file, position) of the event that logged `statement`."""
    cur.execute("SHOW BINARY LOGS")
    for log_name, *_rest in reversed(cur.fetchall()):
        cur.execute(f"SHOW BINLOG EVENTS IN '{log_name}'")
        for _, pos, event_type, _, _, info in reversed(cur.fetchall()):
            if event_type == "Query" and statement in info:
                return log_name, int(pos)
    raise AssertionError(f"{statement!r} is not in the binlog")


def _launch_checks(stack: LocalStack, check_keys: list[dg.AssetCheckKey]) -> str:
    """Run asset checks through the stack's webserver, as a user clicking "Execute" would."""
    return launch_run(
        stack,
        "__ASSET_JOB",
        assetSelection=[],
        assetCheckSelection=[
            {"assetKey": {"path": list(key.asset_key.path)}, "name": key.name} for key in check_keys
        ],
    )


class Inserter(SourceWriter):
    """Inserts, updates and deletes rows of drift_widen until stopped; counts the changes."""

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.next_id = 10

    def run(self) -> None:
        try:
            with (
                connect_source(self.settings, admin=True, database="shop") as conn,
                conn.cursor() as cur,
            ):
                while not self.stop.is_set():
                    n = self.next_id
                    self.next_id += 1
                    # Only columns every version of the table has, so DDL never breaks it.
                    cur.execute(
                        "INSERT INTO drift_widen (id, qty, amount, label) VALUES (%s, %s, %s, %s)",
                        (n, n, Decimal(n) + Decimal("0.25"), f"label-{n}"),
                    )
                    self.changes += cur.rowcount
                    if n % 3 == 0:
                        cur.execute("UPDATE drift_widen SET qty = qty + 1 WHERE id = %s", (n - 2,))
                        self.changes += cur.rowcount
                    if n % 7 == 0:
                        cur.execute("DELETE FROM drift_widen WHERE id = %s", (n - 5,))
                        self.changes += cur.rowcount
                    time.sleep(0.05)
        except Exception as exc:  # noqa: BLE001 - reported by the test, in the main thread
            self.error = exc


def test_schema_drift_rotates_bronze_and_keeps_silver_equal(drift_stack: LocalStack) -> None:
    settings = drift_stack.settings
    admin = connect_source(settings, admin=True, database="shop")
    expected = {WIDEN: 0, BREAK: 0}
    versions_at: list[tuple[tuple[str, int], bool]] = []
    with admin, admin.cursor() as cur:
        cur.execute(
            """CREATE TABLE drift_widen (
                id INT PRIMARY KEY, qty INT NOT NULL, amount DECIMAL(10,2) NOT NULL,
                label VARCHAR(20) NOT NULL, legacy VARCHAR(10) NULL)"""
        )
        cur.execute("CREATE TABLE drift_break (id INT PRIMARY KEY, code INT NOT NULL)")
        cur.execute(
            "INSERT INTO drift_widen VALUES (1, 1, 1.50, 'first', 'old'), (2, 2, 2.50, 'x', NULL)"
        )
        cur.execute("INSERT INTO drift_break VALUES (1, 10), (2, 20)")
        expected[WIDEN] += 2
        expected[BREAK] += 2

        inserter = Inserter(settings)
        inserter.start()
        try:
            time.sleep(2)
            for statement, new_version in WIDEN_DDL:
                cur.execute(statement)
                versions_at.append((_binlog_position_of(cur, statement), new_version))
                if statement.endswith("BIGINT NOT NULL"):
                    # Breaking, on its own table: INT -> VARCHAR.
                    cur.execute("ALTER TABLE drift_break MODIFY code VARCHAR(20) NOT NULL")
                    cur.execute("INSERT INTO drift_break VALUES (3, 'abc'), (4, '40')")
                    expected[BREAK] += 2
                time.sleep(1.5)
        finally:
            inserter.stop.set()
            inserter.join(timeout=30)
        assert inserter.error is None, inserter.error
        expected[WIDEN] += inserter.changes
        # Values only the widened types hold, and the new column.
        cur.execute(
            "INSERT INTO drift_widen (id, qty, amount, label, note) "
            "VALUES (100000, 5000000000, 12345678.1234, 'wide', 'after')"
        )
        cur.execute("UPDATE drift_widen SET note = 'noted', qty = qty + 1 WHERE id = 2")
        expected[WIDEN] += 2

    wait_for(
        "bronze holds every change",
        lambda: all(_changes_in_bronze(settings, t) >= n for t, n in expected.items()),
        timeout_s=180,
    )
    storage = LakeStorage.from_url(settings.lake_url)

    # -- bronze of the accepted drift: one schema per file, versions change exactly at the DDL
    entries = sorted(_entries(settings, WIDEN), key=lambda e: e.first_offset)
    assert [e.schema_version for e in entries] == sorted(e.schema_version for e in entries)
    assert {e.schema_version for e in entries} == {1, 2, 3, 4, 5}
    assert any(e.rotation_reason == "schema_change" for e in entries)
    for entry in entries:
        assert entry.schema_fingerprint == fingerprint(
            row_schema_of(pq.read_schema(storage.full_path(entry.path)))
        )
    bronze = _bronze(settings, WIDEN).filter(pl.col(OP) != "x")
    assert bronze.height == expected[WIDEN]
    for source_file, source_pos, version in bronze.select(
        SOURCE_FILE, SOURCE_POS, "_schema_version"
    ).iter_rows():
        want = 1 + sum(
            1 for position, new in versions_at if new and position < (source_file, source_pos)
        )
        assert version == want, (source_file, source_pos, version, versions_at)
    last_file = row_schema_of(pq.read_schema(storage.full_path(entries[-1].path)))
    assert str(last_file.field("qty").type) == "int64"
    assert str(last_file.field("amount").type) == "decimal128(12, 4)"
    assert is_dropped(last_file.field("legacy"))

    # -- silver of the accepted drift, by Dagster's automation, equals the source
    wait_for(
        "silver drift_widen equals the source",
        lambda: lake_checks.silver_equals_source(settings, WIDEN),
    )
    silver = lake_checks.silver_without_provenance(settings, WIDEN)
    assert silver.schema["qty"] == pl.Int64
    assert silver.schema["amount"] == pl.Decimal(12, 4)
    assert silver.filter(pl.col("id") == 100000).row(0, named=True) == {
        "id": 100000,
        "qty": 5_000_000_000,
        "amount": Decimal("12345678.1234"),
        "label": "wide",
        "legacy": None,
        "note": "after",
    }
    # The dropped column is kept: its last values where rows have not changed since.
    assert silver.filter(pl.col("id") == 1)["legacy"].to_list() == ["old"]

    # -- the breaking change: written as it is, reported by the worker and the bronze check
    broken = sorted(_entries(settings, BREAK), key=lambda e: e.first_offset)
    assert (broken[0].schema_version, broken[-1].schema_version) == (1, 2)
    types = {
        e.schema_version: str(
            row_schema_of(pq.read_schema(storage.full_path(e.path))).field("code").type
        )
        for e in broken
    }
    assert types == {1: "int32", 2: "string"}
    worker_log = Path(drift_stack.supervisor.log_file(components.BRONZE_WORKER)).read_text()
    assert "BREAKING schema change of shop.drift_break" in worker_log
    assert "column 'code' changed from int32 to string" in worker_log

    direct = check_schema_versions(BronzeLake(storage_url=settings.lake_url), BREAK)
    assert not direct.passed
    assert "column 'code' changed from int32 to string" in (direct.description or "")

    # Silver refused the step and started a resync of the table by itself; once it has caught
    # up, silver holds the new type and equals the source value for value.
    wait_for(
        "silver drift_break healed by the resync its refusal started",
        lambda: lake_checks.silver_equals_source(settings, BREAK),
        timeout_s=300,
    )
    [resync] = ResyncLog.of(settings).states(BREAK)
    assert "column 'code' changed from int32 to string" in resync.request.reason
    assert completed_resyncs(storage, BREAK), "healed without a finished resync"

    # The bronze check as Dagster runs it in the stack's code location, with its resources.
    # (The automation sensor targets AssetSelection.all(), which leaves out checks of external
    # assets such as bronze, so the daemon does not request these checks on its own.)
    check_keys = [dg.AssetCheckKey(bronze_key(t), SCHEMA_CHECK) for t in (BREAK, WIDEN)]
    run_id = _launch_checks(drift_stack, check_keys)
    instance = dg.DagsterInstance.from_config(str(components.dagster_home(settings)))
    try:

        def evaluation(key: dg.AssetCheckKey) -> dg.AssetCheckEvaluation | None:
            record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key]).get(
                key
            )
            if record is None or record.run_id != run_id or record.event is None:
                return None
            data = record.event.dagster_event.event_specific_data  # type: ignore[union-attr]
            return data if isinstance(data, dg.AssetCheckEvaluation) else None

        wait_for(
            f"run {run_id} evaluated the bronze checks",
            lambda: all(evaluation(key) is not None for key in check_keys),
            timeout_s=120,
        )
        broken_check, widened_check = (evaluation(key) for key in check_keys)
        # healed: the step is listed as such, no longer failing the check
        assert broken_check is not None and broken_check.passed, broken_check.description
        healed = str(broken_check.metadata["healed_by_resync"].value)
        assert "column 'code' changed from int32 to string" in healed
        assert widened_check is not None and widened_check.passed, widened_check.description
    finally:
        instance.dispose()

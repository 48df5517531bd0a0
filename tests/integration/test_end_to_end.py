"""A row changed in MariaDB reaches bronze through Debezium and the Faust worker, and silver and
gold through the Dagster sensor and eager automation, all real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import polars as pl
import pytest

from binlake.bronze.layout import OFFSET, OP, PARTITION, TOPIC
from binlake.bronze.manifest import Manifest
from binlake.demo import lake_checks
from binlake.demo.shop_schema import SHOP_DDL
from binlake.local_stack.stack import LocalStack
from binlake.silver.delta_table import SilverDeltaTable
from binlake.silver.pii import PiiPolicy
from binlake.source_db import connect_source
from binlake.storage import LakeStorage
from tests.support.dagster_graphql import graphql
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456)


def _at(seconds: int) -> datetime:
    return T0.replace(second=seconds)


# (statement, params, expected bronze change as (table, op, id)); `updated_at` is unique per
# change so each one can be found in bronze.
SCRIPT = [
    (
        "INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com', %s, %s)",
        (T0, _at(1)),
        ("customers", "c", 1),
    ),
    (
        "INSERT INTO customers VALUES (2, 'Bob', 'bob@example.com', %s, %s)",
        (T0, _at(2)),
        ("customers", "c", 2),
    ),
    (
        "INSERT INTO products VALUES (1, 'SKU-1', 'Widget', 9.99, %s)",
        (_at(3),),
        ("products", "c", 1),
    ),
    (
        "INSERT INTO products VALUES (2, 'SKU-2', 'Gadget', 120.50, %s)",
        (_at(4),),
        ("products", "c", 2),
    ),
    ("INSERT INTO orders VALUES (10, 1, 'new', %s, %s)", (T0, _at(5)), ("orders", "c", 10)),
    (
        "INSERT INTO order_items VALUES (100, 10, 1, 3, 9.99, %s)",
        (_at(6),),
        ("order_items", "c", 100),
    ),
    (
        "INSERT INTO order_items VALUES (101, 10, 2, 1, 120.50, %s)",
        (_at(7),),
        ("order_items", "c", 101),
    ),
    # several updates of one row
    ("UPDATE orders SET status='paid', updated_at=%s WHERE id=10", (_at(8),), ("orders", "u", 10)),
    (
        "UPDATE orders SET status='shipped', updated_at=%s WHERE id=10",
        (_at(9),),
        ("orders", "u", 10),
    ),
    (
        "UPDATE orders SET status='delivered', updated_at=%s WHERE id=10",
        (_at(10),),
        ("orders", "u", 10),
    ),
    # a row inserted and deleted in the same run
    ("INSERT INTO orders VALUES (11, 2, 'new', %s, %s)", (T0, _at(11)), ("orders", "c", 11)),
    (
        "INSERT INTO order_items VALUES (102, 11, 1, 2, 9.99, %s)",
        (_at(12),),
        ("order_items", "c", 102),
    ),
    (
        "UPDATE orders SET status='cancelled', updated_at=%s WHERE id=11",
        (_at(13),),
        ("orders", "u", 11),
    ),
    ("DELETE FROM order_items WHERE id=102", (), ("order_items", "d", 102)),
    ("DELETE FROM orders WHERE id=11", (), ("orders", "d", 11)),
    ("UPDATE products SET price=11.25, updated_at=%s WHERE id=1", (_at(14),), ("products", "u", 1)),
    (
        "INSERT INTO orders VALUES (12, 2, 'new', %s, %s)",
        (T0.replace(hour=5), _at(15)),
        ("orders", "c", 12),
    ),
    (
        "INSERT INTO order_items VALUES (103, 12, 2, 4, 120.50, %s)",
        (_at(16),),
        ("order_items", "c", 103),
    ),
    ("DELETE FROM customers WHERE id=2 AND 1=0", (), None),  # touches nothing: no change
    (
        "UPDATE customers SET email='ada@lake.example', updated_at=%s WHERE id=1",
        (_at(17),),
        ("customers", "u", 1),
    ),
]


def _bronze(stack: LocalStack, table: str) -> pl.DataFrame:
    storage = LakeStorage.from_url(stack.settings.lake_url)
    frames = [
        pl.read_parquet(storage.full_path(entry.path))
        for entry in Manifest(storage).entries_for(table)
    ]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def test_changes_flow_from_mysql_to_gold(running_stack: LocalStack) -> None:
    settings = running_stack.settings
    with connect_source(settings, admin=True, database="shop") as conn, conn.cursor() as cur:
        for ddl in SHOP_DDL:
            cur.execute(ddl)
        for statement, params, _ in SCRIPT:
            cur.execute(statement, params)

    expected = [change for _, _, change in SCRIPT if change]
    tables = ["customers", "products", "orders", "order_items"]

    def changes_in_bronze(table: str) -> int:
        bronze = _bronze(running_stack, f"shop.{table}")
        return bronze.filter(pl.col(OP) != "x").height if bronze.height else 0

    def bronze_complete() -> bool:
        return all(changes_in_bronze(t) >= sum(1 for c in expected if c[0] == t) for t in tables)

    wait_for("bronze holds every change", bronze_complete, timeout_s=120)
    for table in tables:
        bronze = _bronze(running_stack, f"shop.{table}").sort(OFFSET)
        assert bronze.select(TOPIC, PARTITION, OFFSET).is_duplicated().sum() == 0
        changes = bronze.filter(pl.col(OP) != "x")
        got = list(zip(changes[OP].to_list(), changes["id"].to_list(), strict=True))
        want = [(op, key) for t, op, key in expected if t == table]
        assert got == want, f"bronze {table}: {got} != {want}"
        # every delete is followed by Debezium's tombstone, also kept once
        assert bronze.filter(pl.col(OP) == "x").height == sum(1 for op, _ in want if op == "d")

    wait_for(
        "silver equals the source",
        lambda: all(lake_checks.silver_equals_source(settings, f"shop.{t}") for t in tables),
    )
    pii = PiiPolicy.from_settings(settings.silver)
    for table in tables:
        raw = lake_checks.source_table(settings, f"shop.{table}").sort("id")
        source = pii.mask(raw, f"shop.{table}", raw.columns, ["id"])  # as silver masks it
        silver = lake_checks.silver_without_provenance(settings, f"shop.{table}").sort("id")
        assert silver.columns[: len(source.columns)] == source.columns
        assert silver.select(source.columns).rows() == source.rows(), table
    customers = lake_checks.silver_without_provenance(settings, "shop.customers")
    assert "ada@lake.example" not in customers["email"].to_list()  # personal data masked
    assert customers.filter(pl.col("id") == 1)["email"].item() == pii.digest("ada@lake.example")

    wait_for("gold matches the source", lambda: lake_checks.gold_equals_source(settings))
    assert lake_checks.gold_from_lake(settings) == lake_checks.gold_from_source(settings)
    orders_gold = {(row[0], row[1]): row[2:] for row in lake_checks.gold_from_lake(settings)}
    assert orders_gold[("2026-01-02 03:00:00", "delivered")][0] == 1
    assert orders_gold[("2026-01-02 05:00:00", "new")][0] == 1
    assert ("2026-01-02 03:00:00", "cancelled") not in orders_gold


def test_status_reports_every_component_and_table(running_stack: LocalStack) -> None:
    env = {**os.environ, **running_stack.settings.env()}
    result = subprocess.run(
        [sys.executable, "-m", "binlake", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    status = json.loads(result.stdout)
    states = {c["name"]: c["state"] for c in status["components"]}
    assert states == dict.fromkeys(states, "RUNNING") and len(states) == 7
    assert "sql-endpoint" in states
    assert {t["table"] for t in status["tables"]} == set(running_stack.settings.tables)


def test_demo_summary_shows_source_equal_to_silver(running_stack: LocalStack, tmp_path) -> None:
    summary_path = tmp_path / "summary.json"
    env = {**os.environ, **running_stack.settings.env()}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "binlake",
            "demo",
            "--duration",
            "15",
            "--rate",
            "10",
            "--summary-json",
            str(summary_path),
        ],
        env=env,
        timeout=900,
        check=True,
    )
    summary = json.loads(summary_path.read_text())
    assert set(summary["tables"]) == {"customers", "products", "orders", "order_items"}
    for table, counts in summary["tables"].items():
        assert counts["source_rows"] == counts["silver_rows"], table
        assert counts["source_rows"] > 0, table
    assert summary["gold_matches_source"] is True
    assert summary["commit_to_bronze_p95_s"] is not None
    assert summary["commit_to_gold_p95_s"] is not None
    # The demo's changes seen through the SQL endpoint, and its sample answer equal to gold.
    assert summary["commit_to_queryable_p95_s"] is not None
    assert summary["queryable_samples"] > 0
    assert summary["sql_url"].startswith("http://127.0.0.1:")
    answered_orders = sum(int(row[1]) for row in summary["sample_answer"])
    assert answered_orders == summary["gold"]["orders"] > 0
    # The demo had the UI reload once silver held orders: gold's hours start at the oldest
    # order's, not at the 2024 fallback of a lake read empty.
    gold_node = graphql(running_stack, _GOLD_PARTITIONS)["assetNodeOrError"]
    description = gold_node["partitionDefinition"]["description"]
    assert "2024-01-01" not in description, description


_GOLD_PARTITIONS = """
query { assetNodeOrError(assetKey: {path: ["gold", "shop", "orders_by_hour_status"]}) {
  ... on AssetNode { partitionDefinition { description } } } }
"""


def _rebuild(settings, table: str, as_of: str) -> pl.DataFrame:
    """`binlake rebuild` run as a user runs it; the rebuilt table without provenance columns."""
    env = {**os.environ, **settings.env()}
    result = subprocess.run(
        [sys.executable, "-m", "binlake", "rebuild", "--table", table, "--as-of", as_of, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
    rebuilt = json.loads(result.stdout)
    frame = SilverDeltaTable(rebuilt["uri"]).read_current()
    assert rebuilt["rows"] == frame.height
    return frame.select([c for c in frame.columns if not c.startswith("_")])


def test_rebuild_as_of_a_binlog_position_or_a_moment_equals_the_source_then(
    running_stack: LocalStack,
) -> None:
    """Silver rebuilt from bronze as of a binlog position (and as of a time) equals a snapshot of
    the source taken at that position, though the table changed after it (runs after the demo
    has changed orders a lot)."""
    settings = running_stack.settings
    with connect_source(settings, admin=True, database="shop") as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO orders VALUES (90000, 1, 'new', %s, %s)", (T0, T0))
        cur.execute("INSERT INTO orders VALUES (90001, 1, 'new', %s, %s)", (T0, T0))
        # No commit can come between the position and the snapshot: writes wait for the lock.
        cur.execute("FLUSH TABLES WITH READ LOCK")
        cur.execute("SHOW MASTER STATUS")
        binlog_file, binlog_pos = cur.fetchone()[:2]
        snapshot = lake_checks.source_table(settings, "shop.orders")
        moment = datetime.now(UTC)
        cur.execute("UNLOCK TABLES")
    time.sleep(1.5)  # binlog times are whole seconds: what follows is in a later second
    with connect_source(settings, admin=True, database="shop") as conn, conn.cursor() as cur:
        cur.execute("UPDATE orders SET status='paid' WHERE id=90000")
        cur.execute("DELETE FROM orders WHERE id=90001")
        cur.execute("INSERT INTO orders VALUES (90002, 1, 'new', %s, %s)", (T0, T0))
    wait_for(
        "bronze holds the change after the moment",
        lambda: 90002 in _bronze(running_stack, "shop.orders")["id"].to_list(),
        timeout_s=120,
    )

    for as_of in (f"{binlog_file}:{binlog_pos}", moment.isoformat()):
        frame = _rebuild(settings, "shop.orders", as_of)
        assert frame.height == snapshot.height, as_of
        assert lake_checks.rows_as_set(frame, snapshot.columns) == lake_checks.rows_as_set(
            snapshot, snapshot.columns
        ), as_of
        as_then = dict(frame.select("id", "status").iter_rows())
        assert (as_then[90000], 90001 in as_then, 90002 in as_then) == ("new", True, False)

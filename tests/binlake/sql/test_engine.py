"""The embedded engine's views against the Delta tables themselves (read by deltalake and
polars), value for value: tombstones hidden after merges, a new commit seen on the next query,
a new table published without a restart, gold and freshness."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from binlake.gold.delta_table import GoldDeltaTable
from binlake.gold.tables import gold_table_uri
from binlake.settings import Settings
from binlake.silver.delta_table import CURRENT_PROVENANCE, DELETED
from binlake.silver.tables import SilverTables
from binlake.sql.engine import LakeEngine
from binlake.sql.views import FRESHNESS_TABLE
from binlake.storage import LakeStorage
from tests.support.sql_endpoint import merge_silver, orders


@pytest.fixture
def engine(settings: Settings) -> Iterator[LakeEngine]:
    lake = LakeEngine(settings, refresh_seconds=3600)  # new tables found on a miss only
    yield lake
    lake.close()


def frame(engine: LakeEngine, sql: str) -> pl.DataFrame:
    data = engine.query(sql, output_format="ArrowStream").data
    with pa.ipc.open_stream(data) as reader:
        result = pl.from_arrow(reader.read_all())
    assert isinstance(result, pl.DataFrame)
    return result


def silver_current(settings: Settings, table: str) -> pl.DataFrame:
    """The live rows as deltalake reads them, business columns only."""
    target = SilverTables.of(LakeStorage.from_settings(settings)).table(table)
    return target.read_current().drop(*CURRENT_PROVENANCE)


def same_rows(left: pl.DataFrame, right: pl.DataFrame) -> None:
    assert left.columns == right.columns
    assert left.sort("id").to_dicts() == right.sort("id").to_dicts()


def test_current_state_matches_silver_after_merges_with_deletes(settings, engine):
    merge_silver(settings, "shop.orders", [orders(i, "c", i, "new") for i in range(10)])
    merge_silver(
        settings,
        "shop.orders",
        [orders(10, "u", 1, "paid"), orders(11, "d", 2, "new"), orders(12, "d", 3, "new")],
    )
    merge_silver(settings, "shop.orders", [orders(13, "c", 2, "again"), orders(14, "c", 20, "x")])
    engine.sync_views()

    stored = SilverTables.of(LakeStorage.from_settings(settings)).table("shop.orders").read_all()
    assert stored.filter(pl.col(DELETED)).height == 1  # id 3: a tombstone the view must hide
    view = frame(engine, "SELECT * FROM lake.shop__orders")
    same_rows(view, silver_current(settings, "shop.orders"))
    assert 3 not in view["id"].to_list()
    assert view.filter(pl.col("id") == 2)["status"].to_list() == ["again"]
    counted = engine.query("SELECT count() FROM lake.shop__orders").data
    assert int(counted) == stored.filter(~pl.col(DELETED)).height == 10


def test_provenance_view_keeps_provenance_of_live_rows(settings, engine):
    merge_silver(settings, "shop.orders", [orders(0, "c", 1, "new"), orders(1, "c", 2, "new")])
    merge_silver(settings, "shop.orders", [orders(2, "d", 1, "new")])
    engine.sync_views()
    view = frame(engine, "SELECT id, _offset, _op FROM lake.shop__orders__provenance")
    assert view.to_dicts() == [{"id": 2, "_offset": 1, "_op": "c"}]
    columns = frame(engine, "SELECT * FROM lake.shop__orders").columns
    assert not [c for c in columns if c.startswith("_")]


def test_a_new_commit_is_seen_by_the_next_query(settings, engine):
    merge_silver(settings, "shop.orders", [orders(0, "c", 1, "new")])
    engine.sync_views()
    assert frame(engine, "SELECT id, status FROM shop__orders").to_dicts() == [
        {"id": 1, "status": "new"}
    ]
    merge_silver(settings, "shop.orders", [orders(1, "u", 1, "shipped"), orders(2, "c", 2, "n")])
    same_rows(frame(engine, "SELECT * FROM shop__orders"), silver_current(settings, "shop.orders"))
    assert frame(engine, "SELECT status FROM shop__orders WHERE id = 1")["status"].to_list() == [
        "shipped"
    ]


def test_a_table_written_after_start_is_published_on_its_first_query(settings, engine):
    assert engine.views == []
    merge_silver(settings, "shop.orders", [orders(0, "c", 1, "new")])
    assert int(engine.query("SELECT count() FROM lake.shop__orders").data) == 1
    assert engine.views == ["shop__orders", "shop__orders__provenance"]


def test_gold_drops_underscore_columns_and_freshness_tells_age(settings, engine):
    lake = settings.lake_url
    hour = datetime(2024, 6, 1, 10)
    gold = pl.DataFrame(
        {
            "hour": [hour],
            "status": ["paid"],
            "orders": [3],
            "revenue": [Decimal("12.50")],
            "items": [5],
            "_source_ts_ms": [1717236000000],
        },
        schema_overrides={"revenue": pl.Decimal(18, 2)},
    )
    # written by gold's own writer
    GoldDeltaTable(gold_table_uri(lake, "orders_by_hour_status")).replace_hours(
        gold, hour, hour + timedelta(hours=1)
    )
    checked = datetime.now(UTC)
    freshness = pa.table(
        {
            "layer": ["silver"],
            "asset": ["silver/shop/orders"],
            "source_tables": ["shop.orders"],
            "newest_source_commit": pa.array([checked], pa.timestamp("us", "UTC")),
            "lag_seconds": pa.array([1.5], pa.float64()),
            "slo_seconds": pa.array([120.0], pa.float64()),
            "passed": [True],
            "checked_at": pa.array([checked], pa.timestamp("us", "UTC")),
        }
    )
    write_deltalake(f"{lake}/{FRESHNESS_TABLE}", freshness)
    engine.sync_views()

    gold_view = frame(engine, "SELECT * FROM lake.gold__orders_by_hour_status")
    assert gold_view.columns == ["hour", "status", "orders", "revenue", "items"]
    assert gold_view.select("status", "orders", "revenue", "items").to_dicts() == [
        {"status": "paid", "orders": 3, "revenue": Decimal("12.50"), "items": 5}
    ]
    fresh = frame(engine, "SELECT asset, lag_seconds, passed, seconds_since_check FROM freshness")
    assert fresh.select("asset", "lag_seconds", "passed").to_dicts() == [
        {"asset": "silver/shop/orders", "lag_seconds": 1.5, "passed": True}
    ]
    assert 0 <= fresh["seconds_since_check"][0] < 3600

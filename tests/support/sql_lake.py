"""A small lake with real Delta tables in the layouts the SQL views read: silver `shop.orders`
(with a tombstone), gold `orders_by_hour_status` and the freshness table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from binlake.bronze.layout import OFFSET, OP, SOURCE_FILE, SOURCE_POS, SOURCE_ROW, SOURCE_TS_MS
from binlake.freshness_table import FRESHNESS_TABLE
from binlake.gold.tables import gold_table_uri
from binlake.silver.delta_table import DELETED
from binlake.silver.tables import silver_table_uri

# Two hours of gold, both statuses in each: 4 rows.
GOLD_HOURS = (datetime(2026, 12, 7, 10, tzinfo=UTC), datetime(2026, 12, 7, 11, tzinfo=UTC))
GOLD_STATUSES = ("new", "paid")
LIVE_ORDERS = 2  # of the 3 silver rows, one is a tombstone


def write_silver_orders(lake: Path) -> None:
    ts = int(datetime(2026, 12, 7, 11, 30, tzinfo=UTC).timestamp() * 1000)
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "status": ["new", "paid", "paid"],
            SOURCE_FILE: ["f"] * 3,
            SOURCE_POS: pa.array([4, 5, 6], pa.int64()),
            SOURCE_ROW: pa.array([0, 0, 0], pa.int32()),
            OFFSET: pa.array([10, 11, 12], pa.int64()),
            SOURCE_TS_MS: pa.array([ts] * 3, pa.int64()),
            OP: ["c", "u", "d"],
            DELETED: [False, False, True],
        }
    )
    write_deltalake(silver_table_uri(str(lake), "shop.orders"), table)


def write_gold(lake: Path) -> None:
    rows = [(hour, status) for hour in GOLD_HOURS for status in GOLD_STATUSES]
    table = pa.table(
        {
            "hour": pa.array([h for h, _ in rows], pa.timestamp("us", tz="UTC")),
            "status": [s for _, s in rows],
            "orders": pa.array([3, 1, 4, 2], pa.int64()),
            "revenue": pa.array(
                [Decimal("30.00"), Decimal("9.99"), Decimal("41.50"), Decimal("20.00")],
                pa.decimal128(18, 2),
            ),
            "items": pa.array([5, 1, 6, 2], pa.int64()),
            SOURCE_TS_MS: pa.array([1] * len(rows), pa.int64()),
        }
    )
    write_deltalake(gold_table_uri(str(lake), "orders_by_hour_status"), table)


def write_freshness(lake: Path) -> None:
    checked = datetime.now(UTC).replace(microsecond=0)
    table = pa.table(
        {
            "layer": ["silver", "gold"],
            "asset": ["silver/shop/orders", "gold/orders_by_hour_status"],
            "source_tables": ["shop.orders", "shop.orders,shop.order_items"],
            "newest_source_commit": pa.array(
                [checked - timedelta(seconds=5), None], pa.timestamp("us", tz="UTC")
            ),
            "lag_seconds": pa.array([5.0, None], pa.float64()),
            "slo_seconds": [120.0, 600.0],
            "passed": [True, False],
            "checked_at": pa.array([checked, checked], pa.timestamp("us", tz="UTC")),
        }
    )
    write_deltalake(f"{lake}/{FRESHNESS_TABLE}", table)


def write_sql_lake(lake: Path) -> Path:
    write_silver_orders(lake)
    write_gold(lake)
    write_freshness(lake)
    return lake

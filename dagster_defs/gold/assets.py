"""Gold assets."""

from typing import Any

import dagster as dg
import polars as pl

from binlake.bronze_layout import SOURCE_TS_MS
from dagster_defs.automation import GOLD_CONDITION
from dagster_defs.gold.logic import orders_by_hour_status
from dagster_defs.keys import (
    GOLD,
    GOLD_ORDERS_BY_HOUR_STATUS,
    ORDER_ITEMS_TABLE,
    ORDERS_TABLE,
    TAG_LAYER,
    silver_key,
)
from dagster_defs.resources import LAKE_IO_MANAGER


@dg.asset(
    key=GOLD_ORDERS_BY_HOUR_STATUS,
    ins={
        "orders": dg.AssetIn(key=silver_key(ORDERS_TABLE)),
        "order_items": dg.AssetIn(key=silver_key(ORDER_ITEMS_TABLE)),
    },
    io_manager_key=LAKE_IO_MANAGER,
    automation_condition=GOLD_CONDITION,
    group_name=GOLD,
    tags={TAG_LAYER: GOLD},
    kinds={"polars", "parquet"},
    description="Orders, revenue (Decimal(18,2)) and items per hour of created_at and status.",
)
def orders_by_hour_status_asset(
    context: dg.AssetExecutionContext, orders: pl.DataFrame, order_items: pl.DataFrame
) -> dg.Output[pl.DataFrame]:
    result = orders_by_hour_status(orders, order_items)
    max_updated = orders["updated_at"].max() if orders.height else None
    total_revenue = result["revenue"].sum() if result.height else 0
    metadata: dict[str, Any] = {
        "row_count": result.height,
        "total_orders": int(result["orders"].sum()) if result.height else 0,
        "total_items": int(result["items"].sum()) if result.height else 0,
        "total_revenue": f"{total_revenue:.2f}",
        # Wall-clock value as the source stored it (DATETIME has no zone): the demo compares it
        # with its own commit clock to measure commit-to-gold delay.
        "orders_max_updated_at": max_updated.isoformat() if max_updated is not None else "",
    }
    # Newest source commit behind this result, per input table and overall (freshness checks).
    for table, frame in ((ORDERS_TABLE, orders), (ORDER_ITEMS_TABLE, order_items)):
        newest = frame[SOURCE_TS_MS].max() if SOURCE_TS_MS in frame.columns else None
        if newest is not None:
            metadata[f"max_source_ts_ms/{table}"] = int(newest)  # type: ignore[call-overload]
    per_table = [v for k, v in metadata.items() if k.startswith("max_source_ts_ms/")]
    if per_table:
        metadata["max_source_ts_ms"] = max(per_table)
    context.log.info(f"{result.height} hour/status rows from {orders.height} orders")
    return dg.Output(result, metadata=metadata)

"""Orders per hour and status (pure polars, no Dagster).

``revenue`` is ``sum(quantity * unit_price)`` as ``Decimal(18, 2)``: exact cents, no float
rounding, and it reads back as ``decimal.Decimal`` (Delta DECIMAL(18,2)). Hours are the UTC
wall clock of ``orders.created_at`` truncated to the hour, as the source stored it.
"""

from __future__ import annotations

import polars as pl

from binlake.errors import FinalError
from binlake.gold.delta_table import SOURCE_TS_MS

REVENUE_TYPE = pl.Decimal(18, 2)
ORDERS_COLUMNS = ("id", "status", "created_at", "updated_at")
ORDER_ITEMS_COLUMNS = ("order_id", "quantity", "unit_price")
GOLD_SCHEMA = {
    "hour": pl.Datetime("us"),
    "status": pl.String,
    "orders": pl.Int64,
    "revenue": REVENUE_TYPE,
    "items": pl.Int64,
}


def _require(frame: pl.DataFrame, columns: tuple[str, ...], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FinalError(f"silver {name} lacks column(s) {missing}; has {frame.columns}")


def orders_by_hour_status(orders: pl.DataFrame, order_items: pl.DataFrame) -> pl.DataFrame:
    """One row per (hour of created_at, status): orders, revenue and item count.

    Items are attributed to their order's hour and status; items of orders not (or no longer)
    in silver are not counted. An hour/status with orders but no items has revenue 0.00.
    """
    _require(orders, ORDERS_COLUMNS, "shop.orders")
    _require(order_items, ORDER_ITEMS_COLUMNS, "shop.order_items")
    per_order = order_items.group_by("order_id").agg(
        (pl.col("quantity").cast(pl.Int64) * pl.col("unit_price").cast(REVENUE_TYPE))
        .sum()
        .cast(REVENUE_TYPE)
        .alias("revenue"),
        pl.len().cast(pl.Int64).alias("items"),
    )
    return (
        orders.select(
            pl.col("id"),
            pl.col("status").cast(pl.String),
            pl.col("created_at").cast(pl.Datetime("us")).dt.truncate("1h").alias("hour"),
        )
        .join(per_order, left_on="id", right_on="order_id", how="left")
        .group_by("hour", "status")
        .agg(
            pl.len().cast(pl.Int64).alias("orders"),
            pl.col("revenue").fill_null(pl.lit(0).cast(REVENUE_TYPE)).sum().cast(REVENUE_TYPE),
            pl.col("items").fill_null(0).sum().cast(pl.Int64),
        )
        .select(list(GOLD_SCHEMA))
        .cast(GOLD_SCHEMA)  # type: ignore[arg-type]
        .sort("hour", "status", nulls_last=False)
    )


def with_source_commit(
    result: pl.DataFrame, orders: pl.DataFrame, order_items: pl.DataFrame
) -> pl.DataFrame:
    """`result` (``orders_by_hour_status``) plus ``_source_ts_ms``: per hour, the newest source
    commit among the orders created in it and their items (silver's ``_source_ts_ms``)."""
    order_hours = orders.select(
        pl.col("id"),
        pl.col("created_at").cast(pl.Datetime("us")).dt.truncate("1h").alias("hour"),
        pl.col(SOURCE_TS_MS).cast(pl.Int64),
    )
    item_commits = order_items.select(
        pl.col("order_id").alias("id"), pl.col(SOURCE_TS_MS).cast(pl.Int64)
    ).join(order_hours.select("id", "hour"), on="id", how="inner")
    newest = (
        pl.concat(
            [order_hours.select("hour", SOURCE_TS_MS), item_commits.select("hour", SOURCE_TS_MS)]
        )
        .group_by("hour")
        .agg(pl.col(SOURCE_TS_MS).max())
    )
    return result.join(newest, on="hour", how="left").select(*GOLD_SCHEMA, SOURCE_TS_MS)

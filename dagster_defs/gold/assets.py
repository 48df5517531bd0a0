"""Gold assets."""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
import polars as pl

from binlake.gold.hour_window import orders_created_between
from binlake.gold.logic import orders_by_hour_status, with_source_commit
from binlake.settings import Settings
from binlake.silver.delta_table import SilverDeltaTable
from dagster_defs.automation import GOLD_CONDITION
from dagster_defs.freshness.check import freshness_note
from dagster_defs.keys import (
    CHANGED_ORDER_HOURS,
    GOLD,
    GOLD_ORDERS_BY_HOUR_STATUS,
    ORDER_ITEMS_TABLE,
    ORDERS_TABLE,
    TAG_LAYER,
    silver_key,
    writer_pool,
)
from dagster_defs.resources import LAKE_IO_MANAGER, SilverLake


def _naive_utc(moment: datetime) -> datetime:
    """`created_at` is a DATETIME: UTC wall clock without a zone."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def build_changed_order_hours_spec(partitions: dg.PartitionsDefinition) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=CHANGED_ORDER_HOURS,
        partitions_def=partitions,
        group_name=GOLD,
        description="Hours of order creation whose orders or order items changed in silver; "
        "reported by the gold_changed_order_hours sensor, one materialization per silver update "
        "that touched the hour.",
        tags={TAG_LAYER: GOLD},
    )


def build_orders_by_hour_status_asset(
    settings: Settings, partitions: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        key=GOLD_ORDERS_BY_HOUR_STATUS,
        deps=[silver_key(ORDERS_TABLE), silver_key(ORDER_ITEMS_TABLE), CHANGED_ORDER_HOURS],
        partitions_def=partitions,
        # Contiguous changed hours (a cold start: every hour with orders) are one run, not one
        # run per hour.
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key=LAKE_IO_MANAGER,
        # One run commits to the gold Delta table at a time (its own pool, limit 1).
        pool=writer_pool(GOLD_ORDERS_BY_HOUR_STATUS),
        automation_condition=GOLD_CONDITION,
        group_name=GOLD,
        tags={TAG_LAYER: GOLD},
        kinds={"polars", "delta"},
        description="Orders, revenue (Decimal(18,2)) and items per hour of created_at and "
        "status; one partition per hour, recomputed whole when any of its orders or items "
        "changes in silver. " + freshness_note(GOLD, settings.freshness.gold_minutes),
    )
    def orders_by_hour_status_asset(
        context: dg.AssetExecutionContext, silver_lake: SilverLake
    ) -> dg.Output[pl.DataFrame]:
        window = context.partition_time_window
        start, end = _naive_utc(window.start), _naive_utc(window.end)
        orders_table = silver_lake.table(ORDERS_TABLE)
        items_table = silver_lake.table(ORDER_ITEMS_TABLE)
        orders, items = orders_created_between(orders_table, items_table, start, end)
        result = with_source_commit(orders_by_hour_status(orders, items), orders, items)
        # The IO manager replaces every hour of the run with these rows in one Delta commit: an
        # hour without orders (left) is emptied, not left stale.
        context.log.info(
            f"{start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M}: {result.height} hour/status rows "
            f"from {orders.height} orders, {len(context.partition_keys)} partition(s)"
        )
        return dg.Output(result, metadata=_metadata(orders, result, orders_table, items_table))

    return orders_by_hour_status_asset


def _metadata(
    orders: pl.DataFrame,
    result: pl.DataFrame,
    orders_table: SilverDeltaTable,
    items_table: SilverDeltaTable,
) -> dict[str, Any]:
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
    # Newest source commit in the silver tables this run read (freshness checks); hours the
    # run did not cover follow within a tick, requested by the same silver commits.
    for table, silver_table in ((ORDERS_TABLE, orders_table), (ORDER_ITEMS_TABLE, items_table)):
        newest = silver_table.newest_source_ts_ms()
        if newest is not None:
            metadata[f"max_source_ts_ms/{table}"] = int(newest)
    per_table = [v for k, v in metadata.items() if k.startswith("max_source_ts_ms/")]
    if per_table:
        metadata["max_source_ts_ms"] = max(per_table)
    return metadata

"""Which hours of gold a silver update touched (polars over silver's change feed, no Dagster).

Gold aggregates orders by the hour of ``created_at``. A changed order touches the hour of its
``created_at`` before and after the change (the change feed's pre- and post-images; a deleted
order's pre-image still has it). A changed order item touches the hour of its order, before and
after the change (an item moved to another order touches both). An item whose order is not in
silver yet touches nothing: the order's own insert will touch its hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from binlake.silver.delta_table import SilverDeltaTable

ORDER_TIME = "created_at"


def _hours(frame: pl.DataFrame) -> set[datetime]:
    if ORDER_TIME not in frame.columns or not frame.height:
        return set()
    hours = frame.select(pl.col(ORDER_TIME).cast(pl.Datetime("us")).dt.truncate("1h").unique())
    return {hour for hour in hours.to_series() if hour is not None}


def item_order_ids(item_changes: pl.DataFrame) -> list[int]:
    """Orders referenced by changed items, before or after their change."""
    if "order_id" not in item_changes.columns:
        return []
    return sorted(item_changes["order_id"].drop_nulls().unique().to_list())


def changed_order_hours(
    order_changes: pl.DataFrame, item_changes: pl.DataFrame, orders_of_items: pl.DataFrame
) -> list[datetime]:
    """The hours (naive UTC, as the source stores ``created_at``) gold must recompute.

    `order_changes` and `item_changes` are changed rows of silver orders and order items (any
    images); `orders_of_items` holds at least ``id`` and ``created_at`` of the orders
    `item_order_ids(item_changes)` names, as silver has them now.
    """
    hours = _hours(order_changes)
    ids = item_order_ids(item_changes)
    if ids:
        candidates = [
            frame.select("id", pl.col(ORDER_TIME).cast(pl.Datetime("us")))
            for frame in (orders_of_items, order_changes)
            if {"id", ORDER_TIME} <= set(frame.columns)
        ]
        if candidates:
            known = pl.concat(candidates).filter(pl.col("id").is_in(ids))
            hours |= _hours(known)
    return sorted(hours)


@dataclass(frozen=True)
class TouchedHours:
    hours: list[datetime]  # as `changed_order_hours` gives them
    # A table was read whole (first read, or no change feed for the range): the rows that
    # disappeared are unknown, so an hour whose orders all went is not among `hours`.
    read_whole: bool


def hours_touched_since(
    orders: SilverDeltaTable,
    items: SilverDeltaTable,
    orders_since: int | None,
    items_since: int | None,
) -> TouchedHours:
    """The hours touched by the commits of silver `orders` and `items` after the versions given
    (None: never read)."""
    order_changes, orders_whole = _changes(orders, orders_since)
    item_changes, items_whole = _changes(items, items_since)
    ids = item_order_ids(item_changes)
    orders_of_items = orders.read_current(where=[("id", "in", ids)]) if ids else pl.DataFrame()
    hours = changed_order_hours(order_changes, item_changes, orders_of_items)
    return TouchedHours(hours, orders_whole or items_whole)


def _changes(table: SilverDeltaTable, since: int | None) -> tuple[pl.DataFrame, bool]:
    """Rows changed after version `since`, and whether they are the whole current table instead
    (first read, or no change feed for that range)."""
    if since is not None:
        changes = table.changes_since(since)
        if changes is not None:
            return changes, False
    return table.read_current(), True

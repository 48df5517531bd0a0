"""Which hours of gold a silver update touched (pure polars, no Dagster).

Gold aggregates orders by the hour of ``created_at``. A changed order touches the hour of its
``created_at`` before and after the change (the change feed's pre- and post-images; a deleted
order's pre-image still has it). A changed order item touches the hour of its order, before and
after the change (an item moved to another order touches both). An item whose order is not in
silver yet touches nothing: the order's own insert will touch its hour.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

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

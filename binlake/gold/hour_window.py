"""What one run of gold reads from silver: the orders created in its hours and their items."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from binlake.gold.changed_hours import ORDER_TIME
from binlake.silver.delta_table import SilverDeltaTable


def orders_created_between(
    orders_table: SilverDeltaTable, items_table: SilverDeltaTable, start: datetime, end: datetime
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Silver's orders created in ``[start, end)`` (naive UTC, as ``created_at`` is stored) and
    the items of those orders, as silver holds them now."""
    orders = orders_table.read_current(where=[(ORDER_TIME, ">=", start), (ORDER_TIME, "<", end)])
    ids = orders["id"].to_list() if "id" in orders.columns else []
    items = items_table.read_current(where=[("order_id", "in", ids)] if ids else None)
    if not ids:
        items = items.clear()
    return orders, items

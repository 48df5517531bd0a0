"""The earliest hour gold can hold: the hour of the oldest order silver has.

Gold is partitioned by the hour an order was created, which can precede the lake's first bronze
hour (a snapshot of a source with history). Read from the Delta log's file statistics (the
minimum ``created_at`` of each file), not from the rows.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from binlake.gold.changed_hours import ORDER_TIME
from binlake.silver.delta_table import SilverDeltaTable


def earliest_order_hour(orders: SilverDeltaTable) -> datetime | None:
    """The hour (naive UTC) of silver orders' oldest ``created_at``; None without orders or
    statistics."""
    try:
        table = DeltaTable(orders.uri, storage_options=orders.storage_options)
    except TableNotFoundError:
        return None
    files = pl.DataFrame(pa.table(table.get_add_actions(flatten=True)))
    column = f"min.{ORDER_TIME}"
    if column not in files.columns:
        return None
    oldest = files[column].cast(pl.Datetime("us")).min()
    if oldest is None:
        return None
    assert isinstance(oldest, datetime)
    return oldest.replace(minute=0, second=0, microsecond=0, tzinfo=None)

"""`binlake.lake`: the supported Python reader of silver, history and gold, from the settings."""

import time
from datetime import UTC, datetime
from decimal import Decimal

import polars as pl
import pytest

from binlake.errors import FinalError
from binlake.gold.tables import gold_table
from binlake.lake import count_silver, read_gold, read_history, read_silver
from binlake.silver.consumed import ConsumedOffsets
from binlake.silver.tables import SilverTables
from binlake.storage import LakeStorage


def merge_orders(settings, ids: list[int], deleted: list[bool], offset: int) -> None:
    """Rows of silver shop.orders as a merge stores them; deleted ones as tombstones."""
    n = len(ids)
    SilverTables.of(LakeStorage.from_settings(settings)).table("shop.orders").merge(
        pl.DataFrame(
            {
                "id": ids,
                "status": [None if d else "new" for d in deleted],
                "_source_file": ["f"] * n,
                "_source_pos": [offset + i for i in range(n)],
                "_source_row": [0] * n,
                "_offset": [offset + i for i in range(n)],
                "_source_ts_ms": [1000 + offset + i for i in range(n)],
                "_op": ["d" if d else "c" for d in deleted],
                "_deleted": deleted,
            },
            schema_overrides={"status": pl.String},
        ),
        ["id"],
        ConsumedOffsets(),
    )


def test_read_silver_gives_live_rows_and_business_columns(settings):
    merge_orders(settings, [1, 2, 3], [False, False, False], 0)
    between = datetime.now(UTC)
    time.sleep(0.01)  # Delta commit times are milliseconds
    merge_orders(settings, [2], [True], 10)  # order 2 deleted: a tombstone row is stored

    assert read_silver("shop.orders", settings).sort("id").rows() == [(1, "new"), (3, "new")]
    assert count_silver("shop.orders", settings) == 2
    provenance = read_silver("shop.orders", settings, with_provenance=True)
    assert provenance.columns == ["id", "status", "_source_ts_ms", "_offset", "_op"]
    # the Delta table itself holds the tombstone: the count a direct reader would get
    stored = SilverTables.of(LakeStorage.from_settings(settings)).table("shop.orders")
    assert stored.read_all().height == 3 and stored.count_stored() == (2, 1)
    # time travel: before the delete
    assert read_silver("shop.orders", settings, as_of=0)["id"].sort().to_list() == [1, 2, 3]
    assert read_silver("shop.orders", settings, as_of=between).height == 3


def test_read_silver_uses_the_settings_lake(settings, monkeypatch):
    merge_orders(settings, [7], [False], 0)
    # no settings given: loaded from the environment, as every binlake command does
    assert read_silver("shop.orders")["id"].to_list() == [7]


def test_unknown_tables_are_named(settings):
    with pytest.raises(FinalError, match=r"'shop\.nope' is not a captured table"):
        read_silver("shop.nope", settings)
    with pytest.raises(FinalError, match=r"'shop\.orders' has no history table"):
        read_history("shop.orders", settings)
    with pytest.raises(FinalError, match=r"no gold table 'nope'"):
        read_gold("nope", settings)


def test_read_gold_by_hours(settings):
    with pytest.raises(FileNotFoundError, match="does not exist yet"):
        read_gold("orders_by_hour_status", settings)
    ten, eleven, noon = (datetime(2024, 6, 1, h) for h in (10, 11, 12))
    rows = pl.DataFrame(
        {
            "hour": [ten, eleven],
            "status": ["new", "paid"],
            "orders": [1, 2],
            "revenue": [Decimal("1.10"), Decimal("2.00")],
            "items": [1, 3],
            "_source_ts_ms": [5, 6],
        },
        schema_overrides={"revenue": pl.Decimal(18, 2)},
    )
    gold_table(LakeStorage.from_settings(settings), "orders_by_hour_status").replace_hours(
        rows, ten, noon
    )
    every = read_gold("orders_by_hour_status", settings)
    assert every.columns == ["hour", "status", "orders", "revenue", "items"]
    assert every["revenue"].sum() == Decimal("3.10")  # exact
    assert read_gold("orders_by_hour_status", settings, hours=(eleven, noon)).rows() == [
        (eleven, "paid", 2, Decimal("2.00"), 3)
    ]
    with_ts = read_gold("orders_by_hour_status", settings, with_provenance=True)
    assert with_ts["_source_ts_ms"].to_list() == [5, 6]

"""`GoldDeltaTable`: a run's hours replaced in one Delta commit, exact decimals, time travel."""

from datetime import datetime
from decimal import Decimal

import polars as pl
import pytest
from deltalake import DeltaTable

from binlake.errors import FinalError
from binlake.gold.delta_table import REPLACED_HOURS_KEY, GoldDeltaTable
from binlake.gold.logic import GOLD_SCHEMA

SCHEMA = {**GOLD_SCHEMA, "_source_ts_ms": pl.Int64}


def hour(h: int) -> datetime:
    return datetime(2024, 6, 1, h)


def rows(*values: tuple) -> pl.DataFrame:
    return pl.DataFrame(
        [(hour(h), status, 1, Decimal(revenue), 1, ts) for h, status, revenue, ts in values],
        schema=SCHEMA,
        orient="row",
    )


def test_replace_hours_swaps_the_range_in_one_commit(tmp_path):
    table = GoldDeltaTable(str(tmp_path / "gold" / "orders_by_hour_status"))
    assert not table.exists()
    v0 = table.replace_hours(
        rows((10, "new", "1.10", 5), (11, "paid", "2.25", 6)), hour(10), hour(12)
    )
    v1 = table.replace_hours(rows((11, "cancelled", "0.01", 7)), hour(11), hour(13))
    assert (v0, v1) == (0, 1)
    now = table.read().sort("hour")
    assert now.select("hour", "status", "revenue").rows() == [
        (hour(10), "new", Decimal("1.10")),
        (hour(11), "cancelled", Decimal("0.01")),
    ]
    assert now.schema == pl.Schema(SCHEMA)
    assert table.read(version=0).height == 2  # time travel
    assert table.newest_source_ts_ms() == 7
    history = DeltaTable(table.uri).history(1)[0]
    assert history[REPLACED_HOURS_KEY] == "2024-06-01T11:00:00/2024-06-01T13:00:00"


def test_an_empty_run_empties_its_hours_and_creates_the_table(tmp_path):
    table = GoldDeltaTable(str(tmp_path / "gold"))
    table.replace_hours(rows().clear(), hour(10), hour(11))
    assert table.read().height == 0 and table.read().schema == pl.Schema(SCHEMA)
    table.replace_hours(rows((10, "new", "1.00", 1)), hour(10), hour(11))
    table.replace_hours(rows().clear(), hour(10), hour(11))
    assert table.read().height == 0


def test_rows_outside_the_hours_are_refused(tmp_path):
    table = GoldDeltaTable(str(tmp_path / "gold"))
    with pytest.raises(FinalError, match=r"1 row\(s\) outside the hours 2024-06-01 10:00"):
        table.replace_hours(rows((12, "new", "1.00", 1)), hour(10), hour(11))
    with pytest.raises(FinalError, match="need columns"):
        table.replace_hours(pl.DataFrame({"hour": [hour(10)]}), hour(10), hour(11))
    assert not table.exists()

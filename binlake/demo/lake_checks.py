"""Compare the lake with the source: silver with source tables, gold with its SQL definition."""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from binlake.demo.shop_schema import GOLD_ORDERS_BY_HOUR_STATUS_SQL
from binlake.settings import Settings
from binlake.silver.pii import PiiPolicy
from binlake.source_db import connect_source
from dagster_defs.keys import GOLD_ORDERS_BY_HOUR_STATUS, silver_key
from dagster_defs.read import read_layer_table


def source_table(settings: Settings, table: str) -> pl.DataFrame:
    """The whole source table, as polars reads it over the MySQL protocol.

    DECIMAL columns wider than 38 digits, which polars cannot hold, become exact fixed-point
    text, as silver stores them.
    """
    db, name = table.split(".")
    with connect_source(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM `{db}`.`{name}`")
        columns = [d[0] for d in cur.description]
        rows = [list(row) for row in cur.fetchall()]
    for i in range(len(columns)):
        if any(isinstance(r[i], Decimal) and len(r[i].as_tuple().digits) > 38 for r in rows):
            for r in rows:
                r[i] = None if r[i] is None else format(r[i], "f")
    return pl.DataFrame(
        [dict(zip(columns, row, strict=True)) for row in rows],
        schema=columns if not rows else None,
        orient="row",
        infer_schema_length=None,
    )


def silver_without_provenance(settings: Settings, table: str) -> pl.DataFrame:
    silver = read_layer_table(settings, silver_key(table))
    return silver.select([c for c in silver.columns if not c.startswith("_")])


def rows_as_set(frame: pl.DataFrame, columns: list[str]) -> set[tuple]:
    return {tuple(_normalise(v) for v in row) for row in frame.select(columns).iter_rows()}


def _normalise(value: object) -> object:
    if isinstance(value, Decimal):
        return value.normalize()
    if isinstance(value, float):
        return round(value, 6)
    return value


def silver_equals_source(settings: Settings, table: str) -> bool:
    """Row-for-row equality of silver and the source table (provenance columns ignored).

    The source's personal-data columns are masked as silver masks them before comparing, so a
    match also shows the masking is consistent (same value, same digest).
    """
    source = source_table(settings, table)
    source = PiiPolicy.from_settings(settings.silver).mask(source, table, source.columns, [])
    try:
        silver = silver_without_provenance(settings, table)
    except FileNotFoundError:
        return False
    if source.height != silver.height:
        return False
    return rows_as_set(source, source.columns) == rows_as_set(silver, source.columns)


def gold_from_source(settings: Settings) -> list[tuple]:
    """(hour, status, orders, revenue, items) per hour and status, computed by the source."""
    with connect_source(settings, database="shop") as conn, conn.cursor() as cur:
        cur.execute(GOLD_ORDERS_BY_HOUR_STATUS_SQL)
        return [
            (str(hour), status, int(orders), Decimal(revenue).quantize(Decimal("0.01")), int(items))
            for hour, status, orders, revenue, items in cur.fetchall()
        ]


def gold_from_lake(settings: Settings) -> list[tuple]:
    gold = read_layer_table(settings, GOLD_ORDERS_BY_HOUR_STATUS).sort("hour", "status")
    return [
        (
            hour.strftime("%Y-%m-%d %H:00:00"),
            status,
            int(orders),
            Decimal(str(revenue)).quantize(Decimal("0.01")),
            int(items),
        )
        for hour, status, orders, revenue, items in gold.select(
            "hour", "status", "orders", "revenue", "items"
        ).iter_rows()
    ]


def gold_equals_source(settings: Settings) -> bool:
    try:
        return gold_from_lake(settings) == gold_from_source(settings)
    except FileNotFoundError:
        return False

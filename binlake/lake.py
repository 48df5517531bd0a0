"""Read the lake from Python: silver's current state, its history, gold. The supported way.

    from binlake.lake import read_silver, read_gold
    orders = read_silver("shop.orders")            # live rows only, business columns
    gold = read_gold("orders_by_hour_status")      # every hour

The lake is the one of the settings (``BINLAKE_STORAGE_URL`` / ``BINLAKE_CONFIG``, the same as
every binlake command), object stores included; no path appears in user code. Silver keeps a
deleted row as a tombstone (``_deleted = true``) so that late, older changes stay out: reading
its Delta table directly counts them, these functions never do, and every row count binlake
reports (the silver asset's ``rows_live``, ``binlake rebuild``, ``binlake status``) is this one.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from binlake.errors import FinalError
from binlake.gold.delta_table import GoldDeltaTable
from binlake.gold.tables import gold_table
from binlake.settings import Settings, load_settings
from binlake.silver.delta_table import CURRENT_PROVENANCE, SilverDeltaTable
from binlake.silver.tables import SilverTables
from binlake.storage import LakeStorage

AsOf = int | datetime | None  # a Delta version, or the table as it was at that moment


def _storage(settings: Settings | None) -> LakeStorage:
    return LakeStorage.from_settings(settings if settings is not None else load_settings())


def _captured(table: str, settings: Settings) -> None:
    if table not in settings.tables:
        raise FinalError(
            f"{table!r} is not a captured table; binlake captures {settings.tables} "
            "(settings `tables`, BINLAKE_TABLES)"
        )


def silver_table(table: str, settings: Settings | None = None) -> SilverDeltaTable:
    """The silver Delta table of `<db>.<table>` in the settings' lake."""
    settings = settings if settings is not None else load_settings()
    _captured(table, settings)
    return SilverTables.of(_storage(settings)).table(table)


def read_silver(
    table: str,
    settings: Settings | None = None,
    *,
    with_provenance: bool = False,
    as_of: AsOf = None,
) -> pl.DataFrame:
    """The current state of silver `<db>.<table>`: live rows only (tombstones left out), the
    table's columns; plus ``_source_ts_ms``, ``_offset``, ``_op`` with `with_provenance`.
    `as_of` reads an earlier Delta version (int) or the table as of a moment (datetime)."""
    current = silver_table(table, settings).read_current(version=as_of)  # type: ignore[arg-type]
    if with_provenance:
        return current
    return current.drop([c for c in CURRENT_PROVENANCE if c in current.columns])


def count_silver(table: str, settings: Settings | None = None) -> int:
    """Live rows of silver `<db>.<table>`: ``read_silver(table).height``, reading one column."""
    return silver_table(table, settings).count_live()


def read_history(
    table: str, settings: Settings | None = None, *, current_only: bool = False
) -> pl.DataFrame:
    """The SCD type 2 history of `<db>.<table>` (``silver.history_tables``): every version of
    every key with its validity, or only the current versions with `current_only`."""
    settings = settings if settings is not None else load_settings()
    if table not in settings.silver.history_tables:
        raise FinalError(
            f"{table!r} has no history table; tables with one: "
            f"{settings.silver.history_tables} (settings silver.history_tables)"
        )
    history = SilverTables.of(_storage(settings)).history(table)
    return history.read_current() if current_only else history.read_all()


def gold(name: str, settings: Settings | None = None) -> GoldDeltaTable:
    """The Delta table of gold `name` (``binlake.gold.tables.GOLD_TABLE_NAMES``)."""
    return gold_table(_storage(settings), name)


def read_gold(
    name: str,
    settings: Settings | None = None,
    *,
    hours: tuple[datetime, datetime] | None = None,
    as_of: int | None = None,
    with_provenance: bool = False,
) -> pl.DataFrame:
    """Gold `name`, e.g. "orders_by_hour_status": every hour, or those in ``[start, end)``
    (naive UTC) given as `hours`; `as_of` an earlier Delta version. ``_source_ts_ms`` (the
    newest source commit each hour was computed from) only with `with_provenance`.
    FileNotFoundError before gold's first run."""
    frame = gold(name, settings).read(hours=hours, version=as_of)
    if with_provenance:
        return frame
    return frame.select([c for c in frame.columns if not c.startswith("_")])

"""Where the hourly partitions of bronze and gold start: where the lake's data starts.

Read once when the definitions are built (one small object, `binlake.bronze.lake_start`, and
silver orders' Delta log for gold); an explicit ``dagster.partitions_start`` wins. Hours before
the start are never partitions: the UI lists the hours the lake can hold, not thousands of
"missing" ones before it.

- bronze: the lake's first bronze hour (a change is filed under its commit hour, never before
  the first file); an empty lake: `EMPTY_LAKE_LOOKBACK` before now, since its first files may
  hold a backlog (Kafka's, or a binlog Debezium reads from an older position).
- gold (hour of order creation, which can precede the lake: a snapshot of a source with
  history): the older of the lake's first hour and silver orders' oldest ``created_at``; before
  silver has orders, `UNKNOWN_DATA_START`, since an order of any age may still arrive.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import dagster as dg

from binlake.bronze.lake_start import HOUR_FORMAT, lake_start_hour
from binlake.bronze.manifest import Manifest
from binlake.gold.start import earliest_order_hour
from binlake.settings import Settings
from binlake.silver.tables import SilverTables
from binlake.storage import LakeStorage
from dagster_defs.keys import ORDERS_TABLE, hourly_partitions

log = logging.getLogger(__name__)

# Kafka's default retention: the oldest a backlog reaching an empty lake usually is.
EMPTY_LAKE_LOOKBACK = timedelta(days=7)
# Gold before silver has any order, or when the lake cannot be read: wide, as before.
UNKNOWN_DATA_START = "2024-01-01-00:00"


def _hours_ago(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).strftime(HOUR_FORMAT)


def _lake_start(storage: LakeStorage) -> str | None:
    return lake_start_hour(storage, Manifest(storage).entries)


def bronze_partitions_start(settings: Settings) -> str:
    if settings.dagster.partitions_start:
        return settings.dagster.partitions_start
    try:
        return _lake_start(LakeStorage.from_settings(settings)) or _hours_ago(EMPTY_LAKE_LOOKBACK)
    except Exception:  # a lake that cannot be read must not keep Dagster from loading
        log.warning(
            "lake start unknown; bronze partitions from %s", UNKNOWN_DATA_START, exc_info=True
        )
        return UNKNOWN_DATA_START


def gold_partitions_start(settings: Settings) -> str:
    if settings.dagster.partitions_start:
        return settings.dagster.partitions_start
    try:
        storage = LakeStorage.from_settings(settings)
        oldest_order = earliest_order_hour(SilverTables.of(storage).table(ORDERS_TABLE))
        if oldest_order is None:
            return UNKNOWN_DATA_START
        starts = [oldest_order.strftime(HOUR_FORMAT), _lake_start(storage)]
        return min(start for start in starts if start is not None)
    except Exception:  # a lake that cannot be read must not keep Dagster from loading
        log.warning(
            "gold data start unknown; partitions from %s", UNKNOWN_DATA_START, exc_info=True
        )
        return UNKNOWN_DATA_START


def bronze_partitions(settings: Settings) -> dg.HourlyPartitionsDefinition:
    """Bronze's hourly partitions (commit hour), from `bronze_partitions_start`."""
    return hourly_partitions(settings, bronze_partitions_start(settings))


def gold_partitions(settings: Settings) -> dg.HourlyPartitionsDefinition:
    """Gold's hourly partitions (order creation hour), from `gold_partitions_start`."""
    return hourly_partitions(settings, gold_partitions_start(settings))

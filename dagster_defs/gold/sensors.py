"""The changed-hours sensor: tells gold which of its hourly partitions a silver update touched.

Gold is partitioned by the hour an order was created, silver is one current-state table, so no
static partition mapping says which gold hours a silver commit affects: a status change today to
an order of last January affects January. This sensor reads the silver commits made since its
cursor (Delta's change data feed: cost follows the changes, not the table), maps them to hours
(``binlake.gold.changed_hours``) and reports each hour as a materialization of the external
``changed_order_hours`` asset. Gold depends on it partition by partition, so eager automation
recomputes exactly those hours, however old.
"""

from __future__ import annotations

import json
from datetime import datetime

import dagster as dg

from binlake.gold.changed_hours import hours_touched_since
from dagster_defs.declare import running_sensor
from dagster_defs.keys import (
    CHANGED_ORDER_HOURS,
    GOLD_ORDERS_BY_HOUR_STATUS,
    ORDER_ITEMS_TABLE,
    ORDERS_TABLE,
)
from dagster_defs.resources import SilverLake

CHANGED_HOURS_SENSOR_NAME = "gold_changed_order_hours"
# Every second: a silver commit reported just after an automation tick waits a whole tick
# (about 5 s here) for the next one; a tick of this sensor with nothing new reads two Delta
# logs' versions and stops.
INTERVAL_SECONDS = 1
_TABLES = (ORDERS_TABLE, ORDER_ITEMS_TABLE)


# Written into the cursor since gold is a Delta table. A cursor without it was kept while gold
# was Parquet files, which the Delta table does not hold: every hour with orders is reported
# once more, so the Delta table gets them all (the Parquet files are no longer read).
GOLD_STORE_KEY = "gold_store"
GOLD_STORE = "delta"


def parse_cursor(cursor: str | None) -> dict[str, int | None]:
    """Silver Delta version last read per table (None: never read); empty for a cursor from
    before gold was a Delta table (`GOLD_STORE_KEY`), so everything is read again."""
    if not cursor:
        return {}
    try:
        versions = json.loads(cursor)
    except json.JSONDecodeError:
        raise ValueError(f"changed-hours sensor cursor {cursor!r} is not JSON") from None
    store = versions.pop(GOLD_STORE_KEY, None) if isinstance(versions, dict) else None
    if not isinstance(versions, dict) or not all(
        v is None or isinstance(v, int) for v in versions.values()
    ):
        raise ValueError(f"changed-hours sensor cursor {cursor!r} is not {{table: version}}")
    return versions if store == GOLD_STORE else {}


def format_cursor(versions: dict[str, int | None]) -> str:
    return json.dumps({**versions, GOLD_STORE_KEY: GOLD_STORE})


def partition_key(hour: datetime) -> str:
    return hour.strftime("%Y-%m-%d-%H:00")


def build_changed_hours_sensor(partitions: dg.HourlyPartitionsDefinition) -> dg.SensorDefinition:
    @running_sensor(
        name=CHANGED_HOURS_SENSOR_NAME,
        interval_seconds=INTERVAL_SECONDS,
        description="Reads silver orders and order items commits since its cursor and reports "
        "the hours of order creation they touched, so gold recomputes those hours.",
    )
    def gold_changed_order_hours(
        context: dg.SensorEvaluationContext, silver_lake: SilverLake
    ) -> dg.SensorResult:
        read = parse_cursor(context.cursor)
        tables = {name: silver_lake.table(name) for name in _TABLES}
        now = {name: table.version() for name, table in tables.items()}
        if all(now[name] == read.get(name) for name in _TABLES):
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"no silver commit since versions {now}"),
                cursor=format_cursor(now),
            )
        touched = hours_touched_since(
            tables[ORDERS_TABLE],
            tables[ORDER_ITEMS_TABLE],
            read.get(ORDERS_TABLE),
            read.get(ORDER_ITEMS_TABLE),
        )
        keys = {partition_key(hour) for hour in touched.hours}
        if touched.read_whole:
            # Read as a whole, the rows that disappeared are unknown: recompute every hour gold
            # already holds too, so an hour whose orders all went is emptied.
            keys |= context.instance.get_materialized_partitions(GOLD_ORDERS_BY_HOUR_STATUS)
        first, last = partitions.get_first_partition_key(), partitions.get_last_partition_key()
        outside = sorted(k for k in keys if first is None or last is None or not first <= k <= last)
        if outside:
            context.log.warning(
                f"{len(outside)} changed hour(s) outside the gold partitions {first}..{last}, "
                f"not recomputed: {outside[:5]}{'...' if len(outside) > 5 else ''}. Set "
                "dagster.partitions_start (BINLAKE_DAGSTER__PARTITIONS_START) earlier."
            )
        events = [
            dg.AssetMaterialization(
                asset_key=CHANGED_ORDER_HOURS,
                partition=key,
                metadata={f"silver_version/{n}": v for n, v in now.items() if v is not None},
            )
            for key in sorted(keys - set(outside))
        ]
        context.log.info(f"silver versions {read} -> {now}: {len(events)} hour(s) changed")
        return dg.SensorResult(asset_events=events, cursor=format_cursor(now))

    return gold_changed_order_hours

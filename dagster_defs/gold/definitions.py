"""Gold layer definitions; empty unless shop.orders and shop.order_items are captured."""

from __future__ import annotations

import dagster as dg

from binlake.settings import Settings
from dagster_defs.freshness.check import build_freshness_check
from dagster_defs.gold.assets import (
    build_changed_order_hours_spec,
    build_orders_by_hour_status_asset,
)
from dagster_defs.gold.sensors import build_changed_hours_sensor
from dagster_defs.keys import (
    GOLD,
    GOLD_ORDERS_BY_HOUR_STATUS,
    ORDER_ITEMS_TABLE,
    ORDERS_TABLE,
    gold_enabled,
)
from dagster_defs.partitions_start import gold_partitions


def build_gold_definitions(settings: Settings) -> dg.Definitions:
    if not gold_enabled(settings):
        return dg.Definitions()
    freshness = build_freshness_check(
        GOLD_ORDERS_BY_HOUR_STATUS,
        GOLD,
        settings.freshness.gold_minutes,
        [ORDERS_TABLE, ORDER_ITEMS_TABLE],
    )
    partitions = gold_partitions(settings)
    return dg.Definitions(
        assets=[
            build_changed_order_hours_spec(partitions),
            build_orders_by_hour_status_asset(settings, partitions),
        ],
        asset_checks=[freshness],
        sensors=[build_changed_hours_sensor(partitions)],
    )

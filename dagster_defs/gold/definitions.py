"""Gold layer definitions; empty unless shop.orders and shop.order_items are captured."""

from __future__ import annotations

import dagster as dg

from binlake.settings import Settings
from dagster_defs.freshness import build_freshness_check
from dagster_defs.gold.assets import orders_by_hour_status_asset
from dagster_defs.keys import (
    GOLD,
    GOLD_ORDERS_BY_HOUR_STATUS,
    ORDER_ITEMS_TABLE,
    ORDERS_TABLE,
    gold_enabled,
)


def build_gold_definitions(settings: Settings) -> dg.Definitions:
    if not gold_enabled(settings):
        return dg.Definitions()
    freshness = build_freshness_check(
        GOLD_ORDERS_BY_HOUR_STATUS,
        GOLD,
        settings.freshness.gold_minutes,
        [ORDERS_TABLE, ORDER_ITEMS_TABLE],
    )
    return dg.Definitions(assets=[orders_by_hour_status_asset], asset_checks=[freshness])

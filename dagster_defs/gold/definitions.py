"""Gold layer definitions; empty unless shop.orders and shop.order_items are captured."""

from __future__ import annotations

import dagster as dg

from binlake.settings import Settings
from dagster_defs.gold.assets import orders_by_hour_status_asset
from dagster_defs.keys import gold_enabled


def build_gold_definitions(settings: Settings) -> dg.Definitions:
    if not gold_enabled(settings):
        return dg.Definitions()
    return dg.Definitions(assets=[orders_by_hour_status_asset])

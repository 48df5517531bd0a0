"""Silver layer definitions: per table a current-state asset, its reconciliation, freshness and
schema checks."""

from __future__ import annotations

import dagster as dg

from binlake.settings import Settings
from dagster_defs.automation import CHECK_CONDITION
from dagster_defs.bronze.checks import build_schema_check
from dagster_defs.freshness.check import build_freshness_check
from dagster_defs.keys import SILVER, silver_key
from dagster_defs.silver.assets import build_silver_asset
from dagster_defs.silver.checks import build_reconciliation_check
from dagster_defs.silver.history_assets import build_history_asset
from dagster_defs.silver.sensors import build_silver_catch_up_sensor


def build_silver_definitions(settings: Settings) -> dg.Definitions:
    slo = settings.freshness.silver_minutes
    return dg.Definitions(
        sensors=[build_silver_catch_up_sensor(settings)],
        assets=[
            *(build_silver_asset(table, settings) for table in settings.tables),
            *(build_history_asset(t, settings) for t in settings.silver.history_tables),
        ],
        asset_checks=[
            *(build_reconciliation_check(table, settings) for table in settings.tables),
            *(build_freshness_check(silver_key(t), SILVER, slo, [t]) for t in settings.tables),
            *(
                build_schema_check(t, asset=silver_key(t), automation_condition=CHECK_CONDITION)
                for t in settings.tables
            ),
        ],
    )

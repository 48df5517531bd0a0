"""Silver layer definitions: a current-state asset and a row-count check per table."""

from __future__ import annotations

import dagster as dg

from binlake.settings import Settings
from dagster_defs.silver.assets import build_silver_asset
from dagster_defs.silver.checks import build_row_count_check


def build_silver_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=[build_silver_asset(table) for table in settings.tables],
        asset_checks=[build_row_count_check(table) for table in settings.tables],
    )

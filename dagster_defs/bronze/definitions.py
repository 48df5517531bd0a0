"""Bronze layer definitions: external assets, the manifest sensor and the bronze checks.

Checks of each bronze table: schema versions compatible, offsets contiguous, freshness. The
freshness sensor evaluates the freshness checks of every layer of the code location (silver's
and gold's too), so it is defined once, here.
"""

from __future__ import annotations

import dagster as dg

from binlake.alerts import Alerter
from binlake.settings import Settings
from dagster_defs.bronze.assets import build_bronze_specs
from dagster_defs.bronze.checks import build_schema_check
from dagster_defs.bronze.continuity import build_continuity_check
from dagster_defs.bronze.sensors import build_manifest_sensor
from dagster_defs.freshness.check import build_freshness_check
from dagster_defs.freshness.sensor import build_freshness_sensor
from dagster_defs.keys import BRONZE, bronze_key
from dagster_defs.partitions_start import bronze_partitions


def build_bronze_definitions(settings: Settings) -> dg.Definitions:
    partitions = bronze_partitions(settings)
    checks: list[dg.AssetChecksDefinition] = []
    for table in settings.tables:
        checks.append(build_schema_check(table))
        checks.append(build_continuity_check(table))
        checks.append(
            build_freshness_check(
                bronze_key(table), BRONZE, settings.freshness.bronze_minutes, [table]
            )
        )
    return dg.Definitions(
        assets=build_bronze_specs(settings, partitions),
        asset_checks=checks,
        sensors=[
            build_manifest_sensor(settings, partitions),
            build_freshness_sensor(
                alerter=Alerter.from_settings(settings),
                alert_repeat_seconds=settings.alerts.repeat_minutes * 60.0,
            ),
        ],
    )

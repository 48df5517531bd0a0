"""Bronze layer definitions: external assets, the manifest sensor and the schema checks."""

from __future__ import annotations

import dagster as dg

from binlake.settings import Settings
from dagster_defs.bronze.assets import build_bronze_specs
from dagster_defs.bronze.checks import build_schema_check
from dagster_defs.bronze.sensors import build_manifest_sensor
from dagster_defs.keys import bronze_partitions


def build_bronze_definitions(settings: Settings) -> dg.Definitions:
    partitions = bronze_partitions(settings)
    return dg.Definitions(
        assets=build_bronze_specs(settings, partitions),
        asset_checks=[build_schema_check(table) for table in settings.tables],
        sensors=[build_manifest_sensor(settings, partitions)],
    )

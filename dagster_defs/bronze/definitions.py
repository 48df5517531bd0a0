"""Bronze layer definitions: external assets and the manifest sensor."""

from __future__ import annotations

import dagster as dg

from binlake.settings import Settings
from dagster_defs.bronze.assets import build_bronze_specs
from dagster_defs.bronze.sensors import build_manifest_sensor
from dagster_defs.keys import bronze_partitions


def build_bronze_definitions(settings: Settings) -> dg.Definitions:
    partitions = bronze_partitions(settings)
    return dg.Definitions(
        assets=build_bronze_specs(settings, partitions),
        sensors=[build_manifest_sensor(settings, partitions)],
    )

"""The code location: ``defs``, built lazily from the layer packages.

Settings (and so the environment, the lake location and the captured tables) are read once,
when Dagster loads ``defs``, not when a layer module is imported. Tests and tools call
``build_definitions(settings)`` with settings of their own.
"""

from __future__ import annotations

import dagster as dg

from binlake.settings import Settings, load_settings
from dagster_defs.automation import build_automation_sensor
from dagster_defs.bronze.definitions import build_bronze_definitions
from dagster_defs.compaction.definitions import build_compaction_definitions
from dagster_defs.gold.definitions import build_gold_definitions
from dagster_defs.health.definitions import build_health_definitions
from dagster_defs.maintenance.definitions import build_maintenance_definitions
from dagster_defs.replay.definitions import build_replay_definitions
from dagster_defs.resources import build_resources
from dagster_defs.resync.definitions import build_resync_definitions
from dagster_defs.silver.definitions import build_silver_definitions


def build_definitions(settings: Settings) -> dg.Definitions:
    # Locally all steps of a run share one process: each step process would cost ~150 MB and
    # a second of start-up on a small machine. Production keeps Dagster's default executor.
    executor = dg.in_process_executor if settings.environment == "local" else None
    return dg.Definitions.merge(
        build_bronze_definitions(settings),
        build_silver_definitions(settings),
        build_gold_definitions(settings),
        build_maintenance_definitions(settings),
        build_compaction_definitions(settings),
        build_replay_definitions(settings),
        build_health_definitions(settings),
        build_resync_definitions(settings),
        dg.Definitions(
            sensors=[build_automation_sensor(settings)],
            resources=build_resources(settings),
            executor=executor,
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_settings())

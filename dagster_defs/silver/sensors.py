"""The catch-up sensor: requests a silver run for a table whose bronze files silver has not merged.

Eager automation treats every bronze report made before a silver materialization as handled by
it. A file that reaches the manifest after silver's last read but is reported before its
materialization is stored is then never merged, until some later change of the table triggers
silver again; at the end of a burst there is none. The silver asset narrows that window by
reading until the manifest stops growing; this sensor closes it: it compares each silver table's
consumed offsets (from its Delta commit metadata) with the manifest and requests a run of that
silver asset when a file of the table older than a grace period is not merged. The run key names
the first such file, so each gap is requested once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import dagster as dg

from binlake.settings import Settings
from binlake.silver.incremental import unmerged_files
from dagster_defs.declare import running_sensor
from dagster_defs.keys import silver_history_key, silver_key
from dagster_defs.resources import BronzeLake, SilverLake

SILVER_CATCH_UP_SENSOR_NAME = "silver_catch_up"
# Files younger than this are left to eager automation (which normally takes a few seconds).
GRACE_SECONDS = 20.0
INTERVAL_SECONDS = 15


def build_silver_catch_up_sensor(
    settings: Settings, *, clock: Callable[[], float] = time.time
) -> dg.SensorDefinition:
    tables = list(settings.tables)
    # Current-state tables and the history tables asked for: both keep their consumed offsets
    # in their Delta commits, and both are triggered by the same bronze reports.
    targets = [(table, silver_key(table), False) for table in tables] + [
        (table, silver_history_key(table), True) for table in settings.silver.history_tables
    ]

    @running_sensor(
        name=SILVER_CATCH_UP_SENSOR_NAME,
        interval_seconds=INTERVAL_SECONDS,
        asset_selection=[key for _, key, _ in targets],
        description="Requests a silver run for a table when a bronze file older than "
        f"{GRACE_SECONDS:g} s is not merged into it (closes eager automation's race).",
    )
    def silver_catch_up(
        context: dg.SensorEvaluationContext, bronze_lake: BronzeLake, silver_lake: SilverLake
    ) -> dg.SensorResult:
        now = clock()
        bronze = bronze_lake.reader()
        requests: list[dg.RunRequest] = []
        for table, key, history in targets:
            delta = silver_lake.history(table) if history else silver_lake.table(table)
            behind = unmerged_files(bronze, table, delta.consumed(), now - GRACE_SECONDS)
            if behind:
                first = behind[0]
                context.log.info(
                    f"{key.to_user_string()} has not merged {len(behind)} bronze file(s), the "
                    f"first {first.path}: requesting a run"
                )
                requests.append(
                    dg.RunRequest(
                        run_key=f"{key.to_user_string()}:{first.topic}:{first.partition}:"
                        f"{first.first_offset}",
                        asset_selection=[key],
                    )
                )
        if not requests:
            return dg.SensorResult(skip_reason="every silver table has merged its bronze files")
        return dg.SensorResult(run_requests=requests)

    return silver_catch_up

"""``resync_progress``: records the end of resyncs nobody waits for and asks silver to sweep.

A resync started by the reconciliation check, by a table added to the connector, or by a
``binlake resync --no-wait`` has no process waiting for Debezium's COMPLETED notification. This
sensor reads the notifications for every resync of a captured table not over yet, records the
end in the lake, and then requests a run of the table's silver asset, whose sweep removes the
rows the resync did not see once silver has merged up to the resync's end. The run key holds
the manifest's size, so silver is asked again only when bronze has grown.
"""

from __future__ import annotations

import dagster as dg

from binlake.settings import Settings
from binlake.silver.resync import ResyncLog, check_completion, resync_again_if_schema_unknown
from dagster_defs.declare import running_sensor
from dagster_defs.keys import silver_key
from dagster_defs.resources import BronzeLake

RESYNC_SENSOR_NAME = "resync_progress"
INTERVAL_SECONDS = 15


def build_resync_sensor(settings: Settings) -> dg.SensorDefinition:
    tables = list(settings.tables)

    @running_sensor(
        name=RESYNC_SENSOR_NAME,
        interval_seconds=INTERVAL_SECONDS,
        asset_selection=[silver_key(t) for t in tables],
        description="Records the end of each resync from Debezium's notifications and "
        "requests the silver run that sweeps the rows the source no longer has.",
    )
    def resync_progress(
        context: dg.SensorEvaluationContext, bronze_lake: BronzeLake
    ) -> dg.SensorResult:
        resync_log = ResyncLog.of(settings)
        requests: list[dg.RunRequest] = []
        for table in tables:
            states = resync_log.states(table)
            if states:
                again = resync_again_if_schema_unknown(settings, states[-1])
                if again is not None:
                    context.log.info(f"resync {states[-1].request.id} of {table} asked again")
            for state in resync_log.pending(table):
                completion = state.completion
                if completion is None:
                    progress, completion = check_completion(
                        settings, state.request, fence_timeout_s=20.0
                    )
                    if completion is None:
                        context.log.info(
                            f"resync {state.request.id} of {table}: Debezium read up to key "
                            f"{progress.last_processed_key} of {progress.maximum_key}"
                        )
                        continue
                    context.log.info(f"resync {state.request.id} of {table}: {completion.status}")
                if not completion.succeeded:
                    continue
                requests.append(
                    dg.RunRequest(
                        run_key=f"resync-sweep:{state.request.id}:{bronze_lake.manifest_size()}",
                        asset_selection=[silver_key(table)],
                    )
                )
        if not requests:
            return dg.SensorResult(skip_reason="no resync waiting for silver's sweep")
        return dg.SensorResult(run_requests=requests)

    return resync_progress

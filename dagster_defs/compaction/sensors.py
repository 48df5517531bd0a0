"""Starts ``bronze_compaction`` when some closed bronze hour has files worth compacting, or
bronze has files past ``compactor.bronze_retention_days``.

The run key is a digest of the files planned, so one set of files gets one run however many
ticks see it before it is compacted.
"""

from __future__ import annotations

import hashlib

import dagster as dg

from binlake.settings import Settings
from compactor.run import plan_pass
from dagster_defs.declare import running_sensor

COMPACTION_SENSOR_NAME = "bronze_compaction_sensor"


def build_compaction_sensor(settings: Settings, job: dg.JobDefinition) -> dg.SensorDefinition:
    @running_sensor(
        name=COMPACTION_SENSOR_NAME,
        job=job,
        interval_seconds=settings.compactor.sensor_interval_seconds,
        description="Requests a compaction run when a closed bronze hour has small files "
        f"(closed: ended and quiet for {settings.compactor.grace_minutes:g} min) or bronze "
        "files are past compactor.bronze_retention_days.",
    )
    def bronze_compaction_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        plan = plan_pass(settings)
        groups, expiring = plan.groups, plan.expiring
        if not groups and not expiring:
            return dg.SensorResult(
                skip_reason="no closed bronze hour with files to compact and no file to expire"
            )
        compacting = [f.path for group in groups for f in group.files]
        # Marked apart: expiring a set of files and compacting the same set are different runs.
        paths = sorted([*compacting, *(f"expire:{f.path}" for f in expiring)])
        run_key = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:32]
        context.log.info(
            f"{len(groups)} group(s), {len(compacting)} files to compact, "
            f"{len(expiring)} files to expire"
        )
        return dg.SensorResult(run_requests=[dg.RunRequest(run_key=run_key)])

    return bronze_compaction_sensor

"""Maintenance definitions: the ``binlake_maintenance`` job and its nightly schedule."""

from __future__ import annotations

import dagster as dg

from binlake.settings import Settings
from dagster_defs.maintenance.jobs import MAINTENANCE_SCHEDULE_NAME, build_maintenance_job


def build_maintenance_definitions(settings: Settings) -> dg.Definitions:
    job = build_maintenance_job(settings)
    schedule = dg.ScheduleDefinition(
        name=MAINTENANCE_SCHEDULE_NAME,
        job=job,
        cron_schedule=settings.dagster.maintenance_cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Runs binlake_maintenance on dagster.maintenance_cron (UTC).",
    )
    return dg.Definitions(jobs=[job], schedules=[schedule])

"""Resync definitions: the ``table_resync`` job and the ``resync_progress`` sensor."""

from __future__ import annotations

import dagster as dg

from binlake.settings import Settings
from dagster_defs.resync.jobs import build_resync_job
from dagster_defs.resync.sensors import build_resync_sensor


def build_resync_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        jobs=[build_resync_job(settings)], sensors=[build_resync_sensor(settings)]
    )

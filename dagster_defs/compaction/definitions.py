"""Compaction definitions: the ``bronze_compaction`` job and its sensor."""

from __future__ import annotations

import dagster as dg

from binlake.settings import Settings
from dagster_defs.compaction.jobs import build_compaction_job
from dagster_defs.compaction.sensors import build_compaction_sensor


def build_compaction_definitions(settings: Settings) -> dg.Definitions:
    job = build_compaction_job(settings)
    return dg.Definitions(jobs=[job], sensors=[build_compaction_sensor(settings, job)])

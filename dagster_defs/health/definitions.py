"""Health definitions: the connector health sensor and the failed-run alert sensor."""

from __future__ import annotations

import dagster as dg

from binlake.alerts import Alerter
from binlake.settings import Settings
from dagster_defs.health.sensors import build_connector_health_sensor, build_run_failure_sensor


def build_health_definitions(settings: Settings) -> dg.Definitions:
    alerter = Alerter.from_settings(settings)
    return dg.Definitions(
        sensors=[
            build_connector_health_sensor(settings, alerter=alerter),
            build_run_failure_sensor(settings, alerter=alerter),
        ]
    )

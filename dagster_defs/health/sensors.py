"""The connector health sensor and the failed-run alert sensor.

``connector_health`` runs one ``ConnectorHealthWatch`` check per tick: it reads the connector's
and each task's status from the Connect REST API, restarts failed parts with backoff, alerts,
and fails its tick (red in the UI, with connector, task and error summary) for as long as
capture is stopped.

Its state (``HealthState``) lives in the instance's daemon cursor storage under
``binlake/connector_health/<connector>``, not in the sensor cursor: Dagster keeps a tick's cursor
only when the tick succeeds, and this sensor's ticks fail exactly while there is state to keep.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import dagster as dg

from binlake.alerts import Alerter
from binlake.settings import Settings
from cdc.connector_health import HealthState
from cdc.health_watch import ConnectorHealthWatch
from dagster_defs.declare import running_sensor

CONNECTOR_HEALTH_SENSOR_NAME = "connector_health"
RUN_FAILURE_SENSOR_NAME = "run_failure_alerts"
ERROR_LINES = 3


class CaptureStoppedError(Exception):
    """Raised by the health sensor's tick while capture is stopped, to show it red."""


def health_state_key(connector: str) -> str:
    return f"binlake/connector_health/{connector}"


def load_health_state(instance: dg.DagsterInstance, connector: str) -> HealthState:
    key = health_state_key(connector)
    return HealthState.from_json(instance.daemon_cursor_storage.get_cursor_values({key}).get(key))


def save_health_state(instance: dg.DagsterInstance, connector: str, state: HealthState) -> None:
    instance.daemon_cursor_storage.set_cursor_values({health_state_key(connector): state.to_json()})


def build_connector_health_sensor(
    settings: Settings,
    *,
    alerter: Alerter | None = None,
    watch_factory: Callable[[], ConnectorHealthWatch] | None = None,
    clock: Callable[[], float] = time.time,
) -> dg.SensorDefinition:
    """`watch_factory` builds the check for a tick (tests pass one with their own clients)."""
    connector = settings.connect.connector_name

    def new_watch() -> ConnectorHealthWatch:
        if watch_factory is not None:
            return watch_factory()
        watch = ConnectorHealthWatch.from_settings(settings)
        if alerter is not None:
            watch.alerter = alerter
        watch.clock = clock
        return watch

    @running_sensor(
        name=CONNECTOR_HEALTH_SENSOR_NAME,
        interval_seconds=settings.connect.health_interval_seconds,
        description=f"Watches Debezium connector {connector} and its tasks through the Kafka "
        "Connect REST API: restarts FAILED ones with backoff, alerts (webhook) when restarts do "
        "not help, and fails its tick while capture is stopped.",
    )
    def connector_health(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        previous = load_health_state(context.instance, connector)
        watch = new_watch()
        try:
            tick = watch.tick(previous)
        finally:
            watch.connect.close()
        save_health_state(context.instance, connector, tick.state)
        for text in tick.alerts_sent:
            context.log.warning(f"alert sent: {text.splitlines()[0]}")
        if tick.decision.restart:
            context.log.warning(
                f"restart #{tick.state.restarts} of the failed parts of {connector}"
                + (f" failed: {tick.restart_error}" if tick.restart_error else "")
            )
        if tick.capture_stopped:
            raise CaptureStoppedError(tick.problem())
        if tick.decision.recovered:
            context.log.info(tick.decision.reason)
        return dg.SkipReason(tick.decision.reason)

    return connector_health


def run_failure_text(run: dg.DagsterRun, step_errors: list[str], ui_url: str) -> str:
    lines = [f"binlake: Dagster run {run.run_id} of job {run.job_name} failed."]
    lines.extend(f"Step error: {error}" for error in step_errors)
    lines.append(f"{ui_url}/runs/{run.run_id}")
    return "\n".join(lines)


def _first_lines(text: str) -> str:
    return " / ".join(text.strip().splitlines()[:ERROR_LINES])


def build_run_failure_sensor(
    settings: Settings, *, alerter: Alerter | None = None
) -> dg.SensorDefinition:
    """Sends an alert for every failed run of this code location's jobs."""
    alerter = alerter or Alerter.from_settings(settings)
    ui_url = f"http://{settings.dagster.host}:{settings.dagster.port}"

    @dg.run_failure_sensor(
        name=RUN_FAILURE_SENSOR_NAME,
        description="Sends an alert (alerts.webhook_url) for every failed run.",
    )
    def run_failure_alerts(context: dg.RunFailureSensorContext) -> None:
        errors = []
        for event in context.get_step_failure_events():
            data = event.step_failure_data
            error = data.error if data else None
            while error is not None and error.cause is not None:
                error = error.cause  # Dagster wraps the op's own exception: report that one
            message = error.message if error is not None else event.message or ""
            errors.append(f"{event.step_key}: {_first_lines(message)}")
        if not errors and context.failure_event.message:
            errors.append(_first_lines(context.failure_event.message))
        alerter.send(run_failure_text(context.dagster_run, errors, ui_url))

    return run_failure_alerts

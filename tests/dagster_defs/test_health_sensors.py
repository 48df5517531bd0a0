"""The connector health sensor evaluated by Dagster against a fake Connect REST API, and the
failed-run alert sensor on a run that really failed in an ephemeral instance."""

from __future__ import annotations

import dagster as dg
import httpx
import pytest

from binlake.settings import Settings
from cdc.connect_client import ConnectClient
from cdc.connector_health import Phase
from cdc.health_watch import ConnectorHealthWatch
from dagster_defs.health.sensors import (
    CONNECTOR_HEALTH_SENSOR_NAME,
    CaptureStoppedError,
    build_connector_health_sensor,
    build_run_failure_sensor,
    load_health_state,
)
from tests.support.alerts import AlertsDouble
from tests.support.connect import CONFIG, TRACE, FakeConnect


def _sensor(settings: Settings, fake: FakeConnect, alerts: AlertsDouble, now: list[float]):
    def watch() -> ConnectorHealthWatch:
        connect = ConnectClient(
            "http://connect:8083", retry_for_s=0, transport=httpx.MockTransport(fake)
        )
        return ConnectorHealthWatch(settings, connect=connect, alerter=alerts, clock=lambda: now[0])

    return build_connector_health_sensor(settings, watch_factory=watch)


def test_sensor_is_red_while_capture_is_stopped_and_keeps_state_across_failed_ticks(settings):
    fake, alerts, now = FakeConnect(), AlertsDouble(), [1000.0]
    name = settings.connect.connector_name
    fake.configs[name] = CONFIG
    fake.status(name, "RUNNING", ["RUNNING"])
    sensor = _sensor(settings, fake, alerts, now)
    assert sensor.name == CONNECTOR_HEALTH_SENSOR_NAME
    assert sensor.minimum_interval_seconds == settings.connect.health_interval_seconds
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.DagsterInstance.ephemeral() as instance:
        healthy = sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(healthy, dg.SkipReason)
        assert f"connector {name} RUNNING, task 0 RUNNING" in (healthy.skip_message or "")

        fake.status(name, "RUNNING", ["FAILED"], trace=TRACE)
        with pytest.raises(CaptureStoppedError) as red:
            sensor(dg.build_sensor_context(instance=instance))
        assert f"connector {name} RUNNING, task 0 FAILED" in str(red.value)
        assert "Caused by: org.apache.kafka.common.errors.RecordTooLargeException" in str(red.value)
        assert "WorkerSourceTask.java" not in str(red.value)
        state = load_health_state(instance, name)
        assert (state.phase, state.stopped_since, state.restarts) == (Phase.FAILED, 1000.0, 0)

        now[0] += settings.connect.restart_backoff_seconds
        with pytest.raises(CaptureStoppedError):
            sensor(dg.build_sensor_context(instance=instance))
        assert fake.restarts == [{"includeTasks": "true", "onlyFailed": "true"}]
        assert load_health_state(instance, name).restarts == 1  # kept although the tick failed


def test_run_failure_sensor_alerts_with_the_step_error(settings):
    @dg.op
    def explode() -> None:
        raise ValueError("silver merge found 3 rows without a key")

    @dg.job
    def silver_job() -> None:
        explode()

    alerts = AlertsDouble()
    sensor = build_run_failure_sensor(settings, alerter=alerts)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING  # alerts from the first run
    with dg.DagsterInstance.ephemeral() as instance:
        result = silver_job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        failure = next(
            e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE
        )
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_event=failure,
            dagster_instance=instance,
            dagster_run=result.dagster_run,
        )
        sensor(context.for_run_failure())
    [text] = alerts.texts
    assert text.startswith(f"binlake: Dagster run {result.run_id} of job silver_job failed.")
    assert "Step error: explode: ValueError: silver merge found 3 rows without a key" in text
    port = settings.dagster.port
    assert text.endswith(f"http://{settings.dagster.host}:{port}/runs/{result.run_id}")

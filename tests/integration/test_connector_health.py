"""A Debezium task killed by a record over Connect's producer limit, through the real stack:
MariaDB, the Kafka broker, Kafka Connect + Debezium (exactly-once) and the bronze worker, and the
real connector_health sensor evaluated by Dagster (build_sensor_context on the stack's own Dagster
instance) against the real Connect REST API, alerting a local HTTP webhook receiver.

The stack is this module's own (a failing connector stops capture of every table, so it cannot
share the edge-case stack). Its connector gets `kafka.max_record_bytes` = 1 MiB, and the test
inserts a 1.5 MB MEDIUMTEXT row: Connect's producer refuses the record with
`RecordTooLargeException` and the task dies. The test checks that the sensor restarts it with
backoff, that the webhook receives an alert naming the table, the key and the size and what to
change, that `binlake status` shows the task FAILED with the error and for how long, and that
once the operator raises the connector's and the topic's limits the sensor reports the recovery.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)
from pydantic import SecretStr

from binlake.bronze.manifest import Manifest
from binlake.local_stack.components import dagster_home
from binlake.local_stack.stack import LocalStack
from binlake.source_db import connect_source
from binlake.status import collect_capture_status
from binlake.storage import LakeStorage
from cdc.connect_client import FAILED, RUNNING, ConnectClient
from cdc.connector_config import RECORD_FRAMING_BYTES
from cdc.connector_health import Phase, find_record_too_large
from dagster_defs.health.sensors import (
    CaptureStoppedError,
    build_connector_health_sensor,
    load_health_state,
)
from tests.support.processes import run_python_module
from tests.support.stack import integration_settings, wait_for

pytestmark = pytest.mark.integration

TABLE = "shop.health_big"
BIG_BYTES = 1_500_000
LIMIT = 1024 * 1024  # the smallest kafka.max_record_bytes allowed, below the big row
# What the connector's producer allows for it (cdc.connector_config.request_limit_bytes).
PRODUCER_LIMIT = LIMIT + RECORD_FRAMING_BYTES
HEALTH_INTERVAL_S = 2


@dataclass
class Received:
    at: float  # time.monotonic()
    text: str


@dataclass
class WebhookReceiver:
    """A Slack-compatible incoming webhook on a free local port, in a thread of the test."""

    server: ThreadingHTTPServer
    messages: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/T000/B000/secret-token"

    def texts(self) -> list[str]:
        return [m.text for m in self.messages]


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    received: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(Received(time.monotonic(), json.loads(body)["text"]))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield WebhookReceiver(server, received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def health_stack(
    tmp_path_factory: pytest.TempPathFactory, receiver: WebhookReceiver
) -> Iterator[LocalStack]:
    base = integration_settings(tmp_path_factory.mktemp("health-stack"))
    settings = base.model_copy(
        update={
            "tables": [TABLE],
            "kafka": base.kafka.model_copy(update={"max_record_bytes": LIMIT}),
            "connect": base.connect.model_copy(
                update={
                    "health_interval_seconds": HEALTH_INTERVAL_S,
                    "restart_backoff_seconds": 2.0,
                    "restart_backoff_max_seconds": 8.0,
                    "restarts_before_alert": 2,
                    "restart_recovery_seconds": 20.0,
                }
            ),
            "alerts": base.alerts.model_copy(update={"webhook_url": SecretStr(receiver.url)}),
        }
    )
    stack = LocalStack(settings)
    try:
        # No Dagster processes: the test evaluates the sensor itself, so the daemon's ticks of
        # the same sensor do not race it (the instance is the stack's own, as `status` reads it).
        stack.up(with_dagster=False)
        yield stack
    finally:
        stack.down()


def _tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance) -> str | None:
    """One sensor evaluation; the CaptureStoppedError text if the tick failed, else None."""
    try:
        sensor(dg.build_sensor_context(instance=instance))
    except CaptureStoppedError as exc:
        return str(exc)
    return None


def _raise_topic_limit(bootstrap_servers: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(
                "max.message.bytes", str(4 * LIMIT), incremental_operation=AlterConfigOpType.SET
            )
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def _task_state(client: ConnectClient, name: str) -> str:
    return client.get_status(name).tasks[0].state


def test_failed_task_is_restarted_alerted_shown_and_recovers(
    health_stack: LocalStack, receiver: WebhookReceiver
) -> None:
    settings = health_stack.settings
    name = settings.connect.connector_name
    client = ConnectClient(settings.connect.url)
    sensor = build_connector_health_sensor(settings)
    instance = dg.DagsterInstance.from_config(str(dagster_home(settings)))

    with connect_source(settings, admin=True, database="shop") as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE health_big (id INT PRIMARY KEY, note VARCHAR(20), body MEDIUMTEXT)"
        )
        cur.execute("INSERT INTO health_big VALUES (1, 'small', 'x')")
    manifest = Manifest(LakeStorage.from_url(settings.lake_url))
    wait_for("the small row in bronze", lambda: bool(manifest.entries_for(TABLE)))
    assert _tick(sensor, instance) is None
    assert load_health_state(instance, name).phase == Phase.HEALTHY
    assert receiver.messages == []

    with connect_source(settings, admin=True, database="shop") as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO health_big VALUES (2, 'big', REPEAT('y', %s))", (BIG_BYTES,))
    began = time.monotonic()
    while _task_state(client, name) != FAILED:
        assert time.monotonic() - began < 120, "the big row did not fail the task"
        time.sleep(0.25)
    failed_at = time.monotonic()
    trace = client.get_status(name).tasks[0].trace
    too_large = find_record_too_large(trace)
    assert too_large is not None and too_large.limit_bytes == PRODUCER_LIMIT, trace
    assert too_large.record_bytes is not None and too_large.record_bytes > BIG_BYTES

    # Tick as the daemon would, every health_interval_seconds, until the alert arrives.
    first_restart_at: float | None = None
    restart_seen_on_connect = False
    errors: list[str] = []
    while not receiver.messages:
        assert time.monotonic() - failed_at < 300, f"no alert; tick errors: {errors[-3:]}"
        restarts_before = load_health_state(instance, name).restarts
        error = _tick(sensor, instance)
        if error:
            errors.append(error)
        if load_health_state(instance, name).restarts > restarts_before:
            first_restart_at = first_restart_at or time.monotonic()
            # The restart reached Connect: the task leaves FAILED (RESTARTING, then RUNNING).
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not restart_seen_on_connect:
                restart_seen_on_connect = _task_state(client, name) != FAILED
                time.sleep(0.25)
        time.sleep(HEALTH_INTERVAL_S)
    alert_at = receiver.messages[0].at
    state = load_health_state(instance, name)

    assert first_restart_at is not None and restart_seen_on_connect
    assert state.restarts >= 2  # restarts_before_alert restarts that did not help
    # The failing tick names connector, task and the trace summary (no stack frames).
    assert errors, "the sensor's ticks never failed while capture was stopped"
    assert f"connector {name} RUNNING, task 0 FAILED" in errors[0]
    assert "Caused by: org.apache.kafka.common.errors.RecordTooLargeException" in errors[0]
    assert "\tat org.apache" not in errors[0] and "WorkerSourceTask.java" not in errors[0]
    alert = receiver.messages[0].text
    assert f"connector {name} RUNNING, task 0 FAILED" in alert
    assert "2 restart(s) did not help" in alert
    assert f"Table: {TABLE}" in alert
    assert "Key id=2:" in alert
    assert f"{too_large.record_bytes:,} bytes > max.request.size {PRODUCER_LIMIT:,} bytes" in alert
    assert "largest column body (1,500,000 bytes)" in alert
    assert "BINLAKE_KAFKA__MAX_RECORD_BYTES" in alert
    assert f'connect.column_exclude_list ["{TABLE}.body"]' in alert
    assert f"binlake resync --table {TABLE}" in alert

    # `binlake status` once the restarted task has died again.
    wait_for("the task FAILED again", lambda: _task_state(client, name) == FAILED, 60)
    env = {**os.environ, **settings.env()}
    env.pop("DAGSTER_HOME", None)
    asked_at = time.monotonic()
    result = run_python_module("binlake", "status", "--json", env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    capture = json.loads(result.stdout)["capture"]
    assert (capture["state"], capture["capture_stopped"]) == (RUNNING, True)
    assert capture["tasks"][0]["state"] == FAILED
    assert "RecordTooLargeException" in capture["tasks"][0]["error"]
    assert capture["restarts"] == state.restarts
    assert capture["first_seen_stopped_at"] == state.stopped_since
    # First seen by the first tick after the failure was visible (within a few seconds of it),
    # counted up to when `status` ran.
    stopped_for = capture["stopped_for_s"]
    # (the margin: a first tick slow on a busy machine)
    assert asked_at - failed_at - 15 <= stopped_for <= time.monotonic() - failed_at
    assert capture["newest_change_commit_at"] is not None  # the small row's commit

    # The operator's fix: a producer limit above the record (what raising kafka.max_record_bytes
    # does to the connector) and a table topic that takes it (Kafka refuses a record over the
    # topic's max.message.bytes, which Connect set when it created the topic); the sensor sees it
    # RUNNING long enough and reports the recovery.
    _raise_topic_limit(settings.kafka.bootstrap_servers, f"{settings.kafka.topic_prefix}.{TABLE}")
    config = client.get_config(name)
    assert config is not None
    config["producer.override.max.request.size"] = str(4 * LIMIT)
    client.put_connector(name, config)
    fixed_at = time.monotonic()
    while len(receiver.messages) < 2 or "recovered" not in receiver.messages[-1].text:
        assert time.monotonic() - fixed_at < 180, f"no recovery; ticks: {errors[-3:]}"
        error = _tick(sensor, instance)
        if error:
            errors.append(error)
        time.sleep(HEALTH_INTERVAL_S)
    assert load_health_state(instance, name).phase == Phase.HEALTHY
    assert collect_capture_status(settings).capture_stopped is False

    print(
        f"\nconnector health: task FAILED {failed_at - began:.1f} s after the insert; "
        f"first restart {first_restart_at - failed_at:.1f} s after the failure was visible; "
        f"alert {alert_at - failed_at:.1f} s after it ({state.restarts} restarts); "
        f"recovered alert {receiver.messages[-1].at - fixed_at:.1f} s after the fix"
    )

"""One health check against a fake Connect REST API and a fake webhook: restarts, alerts and the
diagnosis of a too-large record (table from the Connect log; what cannot be found is said)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from binlake.alerts import Alerter
from binlake.settings import Settings, load_settings
from cdc.connect_client import ConnectClient
from cdc.connector_health import (
    CONNECT_FAILURE_REPORT_LAG_SECONDS,
    HealthState,
    Phase,
    find_record_too_large,
)
from cdc.health_watch import ConnectorHealthWatch
from cdc.oversized_record import Diagnosis, OversizedRow, _topic_from_log
from tests.support.connect import CONFIG, TRACE, FakeConnect

LOG_LINES = (
    "09:12:18.549 [task-thread-binlake-mysql-0] ERROR org.apache.kafka.connect.runtime."
    "AbstractWorkerSourceTask - WorkerSourceTask{id=binlake-mysql-0} failed to send record to "
    "binlake.shop.big: \n"
    "org.apache.kafka.common.errors.RecordTooLargeException: The message is 1502821 bytes\n"
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        state_dir=tmp_path,
        tables=["shop.big", "shop.other"],
        mysql={"port": _closed_port()},  # the source is down: the diagnosis must say so
        kafka={"max_record_bytes": 1024 * 1024},
        connect={"restart_backoff_seconds": 10, "restarts_before_alert": 1},
        alerts={"webhook_url": "http://hooks.local/secret"},
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _watch(settings: Settings, fake: FakeConnect, sent: list[str], clock: Clock, log: Path | None):
    def webhook(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content)["text"])
        return httpx.Response(200)

    connect = ConnectClient(
        "http://connect:8083", retry_for_s=0, transport=httpx.MockTransport(fake)
    )
    alerter = Alerter(
        SecretStr("http://hooks.local/secret"), transport=httpx.MockTransport(webhook)
    )
    return ConnectorHealthWatch(
        settings, connect=connect, alerter=alerter, clock=clock, connect_log=log
    )


def test_restart_then_alert_with_diagnosis_then_recovered(settings, tmp_path):
    log = tmp_path / "connect.log"
    log.write_text("earlier lines\n" + LOG_LINES)
    fake, sent, clock = FakeConnect(), [], Clock()
    name = settings.connect.connector_name
    fake.configs[name] = CONFIG
    fake.status(name, "RUNNING", ["FAILED"], trace=TRACE)
    watch = _watch(settings, fake, sent, clock, log)

    first = watch.tick(HealthState())
    assert first.capture_stopped and not first.decision.restart and sent == []
    assert "Table: shop.big (found in the Connect log, topic binlake.shop.big)." in (
        first.state.diagnosis or ""
    )
    assert "Could not read shop.big for large rows" in first.problem()
    clock.now += 10
    second = watch.tick(first.state)
    assert second.decision.restart and fake.restarts == [
        {"includeTasks": "true", "onlyFailed": "true"}
    ]
    clock.now += 10
    third = watch.tick(second.state)  # FAILED again: 1 restart did not help -> alert
    [alert] = sent
    assert alert.startswith(
        f"binlake: capture stopped: connector {name} RUNNING, task 0 FAILED. First seen at "
    )
    assert "(20 s ago); 1 restart(s) did not help" in alert
    assert "Caused by: org.apache.kafka.common.errors.RecordTooLargeException" in alert
    assert "\tat " not in alert
    assert "1,502,821 bytes > max.request.size 1,048,576 bytes" in alert
    assert "Table: shop.big" in alert and "BINLAKE_KAFKA__MAX_RECORD_BYTES" in alert
    assert "binlake resync --table shop.big" in alert
    assert "secret" not in third.problem()

    fake.status(name, "RUNNING", ["RUNNING"])
    clock.now += 5  # an operator restarted it before our restart #2 was due
    fourth = watch.tick(third.state)
    assert fourth.state.phase == Phase.RESTARTED and not fourth.decision.restart  # probation
    clock.now += settings.connect.restart_recovery_seconds
    still = watch.tick(fourth.state)  # Connect may report its death up to 35 s late
    assert still.state.phase == Phase.RESTARTED and not still.decision.recovered
    clock.now += CONNECT_FAILURE_REPORT_LAG_SECONDS
    fifth = watch.tick(still.state)
    assert fifth.decision.recovered and fifth.state.phase == Phase.HEALTHY
    assert sent[-1].startswith(f"binlake: capture recovered: connector {name} RUNNING")


def test_unreachable_connect_is_an_observation_not_an_exception(settings):
    fake, sent, clock = FakeConnect(), [], Clock()
    fake.failures = [httpx.ConnectError("refused")] * 10
    tick = _watch(settings, fake, sent, clock, None).tick(HealthState())
    assert tick.capture_stopped and tick.state.failed_units == ()
    assert "no response" in tick.problem() and tick.state.diagnosis is None


def test_missing_connector_is_named(settings):
    tick = _watch(settings, FakeConnect(), [], Clock(), None).tick(HealthState())
    assert tick.capture_stopped
    assert f"no connector named '{settings.connect.connector_name}'" in tick.problem()


def test_failed_restart_is_reported_not_raised(settings):
    fake, clock = FakeConnect(), Clock()
    name = settings.connect.connector_name
    fake.configs[name] = CONFIG
    fake.status(name, "RUNNING", ["FAILED"], trace="java.lang.RuntimeException: x")
    watch = _watch(settings, fake, [], clock, None)
    state = watch.tick(HealthState()).state
    clock.now += 10
    original = fake.__call__

    def failing_restart(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(500, json={"message": "worker busy"})
        return original(request)

    watch.connect = ConnectClient(
        "http://connect:8083", retry_for_s=0, transport=httpx.MockTransport(failing_restart)
    )
    tick = watch.tick(state)
    assert tick.decision.restart and "worker busy" in (tick.restart_error or "")
    assert "The restart failed" in tick.problem()


def test_topic_from_the_connect_log(tmp_path):
    log = tmp_path / "connect.log"
    log.write_text(LOG_LINES + LOG_LINES.replace("shop.big", "shop.other"))
    notes: list[str] = []
    assert _topic_from_log(log, "binlake-mysql", 0, notes) == "binlake.shop.other"
    assert _topic_from_log(log, "binlake-mysql", 1, notes) is None
    assert _topic_from_log(None, "binlake-mysql", 0, notes) is None
    assert _topic_from_log(tmp_path / "absent.log", "binlake-mysql", 0, notes) is None
    assert len(notes) == 3 and "absent.log could not be read" in notes[2]


# Kafka Connect 4.3's log4j2 layout (the local stack's connect.log), an exactly-once task.
KAFKA_4_LOG_LINES = (
    "[2026-12-07 13:02:26,454] ERROR ExactlyOnceWorkerSourceTask{id=binlake-mysql-0} failed to "
    "send record to binlake.shop.health_big:  (org.apache.kafka.connect.runtime."
    "AbstractWorkerSourceTask)\n"
    "org.apache.kafka.common.errors.RecordTooLargeException: The message is 1503131 bytes when "
    "serialized which is larger than 1114112, which is the value of the max.request.size "
    "configuration.\n"
    "[2026-12-07 13:02:26,457] ERROR ExactlyOnceWorkerSourceTask{id=binlake-mysql-0} Task threw "
    "an uncaught and unrecoverable exception. (org.apache.kafka.connect.runtime.WorkerTask)\n"
)


def test_topic_from_a_kafka_4_connect_log(tmp_path):
    log = tmp_path / "connect.log"
    log.write_text(LOG_LINES + KAFKA_4_LOG_LINES)
    notes: list[str] = []
    assert _topic_from_log(log, "binlake-mysql", 0, notes) == "binlake.shop.health_big"
    assert _topic_from_log(log, "binlake-mysql", 1, notes) is None and len(notes) == 1


def test_diagnosis_text_names_what_to_change(settings):
    too_large = find_record_too_large(TRACE)
    assert too_large is not None
    diagnosis = Diagnosis(
        too_large,
        table="shop.big",
        found_by="the Connect log, topic binlake.shop.big",
        rows=[OversizedRow({"id": 2}, 1_500_001, "body", 1_500_000)],
    )
    text = diagnosis.text(settings)
    assert "Key id=2: row stored size 1,500,001 bytes, largest column body (1,500,000 bytes)." in (
        text
    )
    assert "now 1,048,576) to at least 2,097,152" in text
    assert 'connect.column_truncate_to_length_chars {"shop.big.body": <chars>}' in text
    assert 'connect.column_exclude_list ["shop.big.body"]' in text
    assert (
        "The existing topic binlake.shop.big keeps the max.message.bytes it was created with: "
        "`binlake up` and `binlake connector register` raise it to the new limit (2,162,688 "
        "bytes for 2,097,152)" in text
    )
    unknown = Diagnosis(too_large, candidates=["shop.big", "shop.other"]).text(settings)
    assert "Table: not certain; tables written after the committed offset: shop.big, " in unknown
    assert "binlake resync --table <db.table>" in unknown

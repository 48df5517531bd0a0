"""The capture part of `binlake status`: connector and task state from a fake Connect REST API,
the newest change from a real temp lake, and what "stopped for" means."""

from __future__ import annotations

import httpx

from binlake.status import collect_capture_status
from cdc.connect_client import ConnectClient
from cdc.connector_health import HealthState, Phase
from tests.support.connect import CONFIG, TRACE, FakeConnect


def _client(fake: FakeConnect) -> ConnectClient:
    return ConnectClient("http://connect:8083", retry_for_s=0, transport=httpx.MockTransport(fake))


def test_failed_task_with_error_and_both_stopped_figures(settings, bronze):
    t0 = bronze.base_ts_ms
    bronze.write("shop.orders", [bronze.change("c", 0, ts_ms=t0, id=1, status="new")])
    bronze.write("shop.orders", [bronze.change("u", 1, ts_ms=t0 + 30_000, id=1, status="paid")])
    fake = FakeConnect()
    name = settings.connect.connector_name
    fake.configs[name] = CONFIG
    fake.status(name, "RUNNING", ["FAILED"], trace=TRACE)
    seen = t0 / 1000 + 100
    health = HealthState(phase=Phase.FAILED, stopped_since=seen, restarts=2)
    status = collect_capture_status(settings, now=seen + 60, health=health, connect=_client(fake))
    assert (status.state, status.capture_stopped, status.restarts) == ("RUNNING", True, 2)
    [task] = status.tasks
    assert (task.id, task.state) == (0, "FAILED")
    assert task.error is not None and task.error.endswith("max.request.size configuration.")
    assert "\tat " not in task.error and status.error == task.error
    assert status.newest_change_commit_at == t0 / 1000 + 30
    assert (status.stopped_for_s, status.newest_change_age_s) == (60, 130)
    text = status.stopped_text()
    assert text.startswith("first seen stopped by the connector_health sensor 60 s ago (")
    assert "newest change in bronze committed 130 s ago" in text
    assert "capture stopped at most that long ago" in text


def test_running_connector_and_no_sensor_state(settings):
    fake = FakeConnect()
    name = settings.connect.connector_name
    fake.configs[name] = CONFIG
    fake.status(name, "RUNNING", ["RUNNING"])
    status = collect_capture_status(settings, health=HealthState(), connect=_client(fake))
    assert not status.capture_stopped and status.tasks[0].error is None
    assert status.stopped_text() == "capture running"
    assert status.newest_change_commit_at is None  # an empty lake


def test_unreachable_connect_without_a_sensor_state(settings):
    fake = FakeConnect()
    fake.failures = [httpx.ConnectError("refused")] * 5
    status = collect_capture_status(settings, health=HealthState(), connect=_client(fake))
    assert (status.state, status.capture_stopped, status.tasks) == ("UNREACHABLE", True, [])
    assert "no response" in (status.error or "")
    assert status.stopped_for_s is None
    assert "not seen by the connector_health sensor yet" in status.stopped_text()


def test_the_lag_columns_say_why_a_figure_is_missing():
    from binlake.bronze.consumer_lag import table_lag
    from binlake.status import TableStatus, _lag_fields

    def status(lag) -> TableStatus:
        return TableStatus("shop.orders", 3, 1, "f.parquet", 5.0, 3, **_lag_fields(lag))

    behind = table_lag("shop.orders", "binlake.shop.orders", "g", [])
    assert (status(behind).lag_records_text(), status(behind).lag_seconds_text()) == ("0", "0 s")
    none = status(table_lag("shop.orders", "binlake.shop.orders", "g", None))
    assert (none.lag_records_text(), none.lag_seconds_text()) == ("no topic", "no topic")
    down = status("unknown: broker down")
    assert (down.lag_records, down.lag_seconds) == (None, None)
    assert down.lag_records_text() == "unknown: broker down"
    at_least = TableStatus("t", None, 0, None, None, None, "ok", 10_000, False, 61.4)
    assert (at_least.lag_records_text(), at_least.lag_seconds_text()) == (">= 10000", "61 s")

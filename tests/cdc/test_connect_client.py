"""ConnectClient against an in-memory double of the Kafka Connect REST API."""

from __future__ import annotations

import httpx
import pytest

from binlake.errors import ConnectError
from cdc.connect_client import ConnectClient, ConnectHTTPError, ConnectorStatus
from tests.support.connect import CONFIG, PASSWORD, FakeConnect, connect_error


@pytest.fixture
def fake() -> FakeConnect:
    return FakeConnect()


@pytest.fixture
def client(fake: FakeConnect):
    sleeps: list[float] = []
    with ConnectClient(
        "http://connect:8083/",
        timeout=1.0,
        retry_for_s=60,
        max_attempts=4,
        transport=httpx.MockTransport(fake),
        sleep=sleeps.append,
    ) as c:
        c.sleeps = sleeps  # type: ignore[attr-defined]
        yield c


def test_is_ready_and_wait(client: ConnectClient, fake: FakeConnect):
    assert client.is_ready()
    fake.failures = [httpx.ConnectError("refused"), httpx.Response(503)]
    client.wait_until_ready(timeout_s=5, poll_s=0)
    assert len(fake.requests) == 4


def test_wait_until_ready_times_out(fake: FakeConnect):
    fake.failures = [httpx.ConnectError("refused")] * 1000
    with (
        ConnectClient("http://connect:8083", transport=httpx.MockTransport(fake)) as c,
        pytest.raises(ConnectError, match=r"not ready after 0.05s"),
    ):
        c.wait_until_ready(timeout_s=0.05, poll_s=0.01)


def test_put_connector_creates_then_is_a_no_op_then_updates(client, fake):
    assert client.put_connector("binlake-mysql", CONFIG) is True
    assert fake.configs["binlake-mysql"] == CONFIG

    fake.requests.clear()
    assert client.put_connector("binlake-mysql", dict(CONFIG)) is False
    assert fake.requests == [("GET", "/connectors/binlake-mysql/config")]

    assert client.put_connector("binlake-mysql", {**CONFIG, "tasks.max": "2"}) is True
    assert fake.configs["binlake-mysql"]["tasks.max"] == "2"
    assert client.list_connectors() == ["binlake-mysql"]


def test_get_config_of_missing_connector_is_none(client):
    assert client.get_config("nope") is None


def test_status_running(client, fake):
    client.put_connector("c1", CONFIG)
    fake.status("c1", "RUNNING", ["RUNNING"])
    status = client.get_status("c1")

    assert status == ConnectorStatus(
        name="c1",
        state="RUNNING",
        worker_id="127.0.0.1:8083",
        tasks=(status.tasks[0],),
        trace=None,
    )
    assert status.tasks[0].state == "RUNNING" and status.tasks[0].id == 0
    assert status.is_running and not status.is_failed


def test_status_without_tasks_is_not_running():
    status = ConnectorStatus.from_json(
        {"name": "c", "connector": {"state": "RUNNING", "worker_id": "w"}, "tasks": []}
    )
    assert not status.is_running


def test_wait_until_running_waits_through_404_and_unassigned(client, fake):
    states = iter(
        [
            None,
            ("UNASSIGNED", []),
            ("RUNNING", ["UNASSIGNED"]),
            ("RUNNING", ["RUNNING"]),
        ]
    )

    def advance(_: float) -> None:
        state = next(states)
        if state is not None:
            fake.configs.setdefault("c1", CONFIG)
            fake.status("c1", *state)

    client._sleep = advance
    status = client.wait_until_running("c1", timeout_s=30, poll_s=0)
    assert status.is_running


def test_wait_until_running_fails_fast_with_trace(client, fake):
    client.put_connector("c1", CONFIG)
    trace = f"io.debezium.DebeziumException: Access denied (password {PASSWORD})\n\tat ..."
    fake.status("c1", "RUNNING", ["FAILED"], trace=trace)

    with pytest.raises(ConnectError, match=r"connector 'c1' failed: .*Access denied") as info:
        client.wait_until_running("c1", timeout_s=30, poll_s=0)
    assert PASSWORD not in str(info.value)


def test_wait_until_running_times_out(client, fake):
    client.put_connector("c1", CONFIG)
    with pytest.raises(ConnectError, match=r"not running after 0s \(connector UNASSIGNED"):
        client.wait_until_running("c1", timeout_s=0, poll_s=0)


def test_restart_pause_resume_delete(client, fake):
    client.put_connector("c1", CONFIG)
    fake.requests.clear()
    client.restart("c1")
    client.restart("c1", include_tasks=False)
    client.pause("c1")
    client.resume("c1")
    assert client.delete("c1") is True
    assert client.delete("c1") is False
    assert fake.requests == [
        ("POST", "/connectors/c1/restart"),
        ("POST", "/connectors/c1/restart"),
        ("PUT", "/connectors/c1/pause"),
        ("PUT", "/connectors/c1/resume"),
        ("DELETE", "/connectors/c1"),
        ("DELETE", "/connectors/c1"),
    ]


def test_error_carries_status_and_server_message(client):
    with pytest.raises(ConnectHTTPError) as info:
        client.get_status("missing")
    error = info.value
    assert isinstance(error, ConnectError)
    assert error.status_code == 404
    assert error.server_message == "Connector missing not found"
    assert "GET /connectors/missing/status" in str(error)
    assert "HTTP 404" in str(error)


def test_bad_request_is_not_retried_and_never_shows_the_password(client, fake):
    fake.failures = [
        connect_error(404, "no config yet"),
        connect_error(
            400, f"Connector configuration is invalid: database.password={PASSWORD} rejected"
        ),
    ]
    with pytest.raises(ConnectHTTPError) as info:
        client.put_connector("c1", CONFIG)
    assert info.value.status_code == 400
    assert PASSWORD not in str(info.value)
    assert "database.password=******** rejected" in str(info.value)
    assert client.sleeps == []  # type: ignore[attr-defined]


def test_transient_failures_are_retried(client, fake):
    fake.failures = [
        httpx.ConnectError("connection refused"),
        connect_error(
            409, "Cannot complete request because of a conflicting operation (rebalance)"
        ),
        connect_error(500, "Request timed out"),
    ]
    assert client.list_connectors() == []
    assert len(client.sleeps) == 3  # type: ignore[attr-defined]


def test_retries_give_up_with_the_last_error(client, fake):
    fake.failures = [connect_error(503, "still starting")] * 10
    with pytest.raises(ConnectHTTPError, match=r"HTTP 503\): still starting"):
        client.list_connectors()
    assert len(fake.requests) == 4  # max_attempts


def test_unreachable_worker_reports_no_response(fake):
    fake.failures = [httpx.ConnectError("connection refused")]
    with (
        ConnectClient(
            "http://connect:8083", retry_for_s=0, transport=httpx.MockTransport(fake)
        ) as c,
        pytest.raises(ConnectHTTPError, match=r"no response.*connection refused") as info,
    ):
        c.list_connectors()
    assert info.value.status_code is None


def test_non_json_error_body(client, fake):
    fake.failures = [httpx.Response(502, text="<html>Bad Gateway</html>")] * 4
    with pytest.raises(ConnectHTTPError, match="Bad Gateway"):
        client.list_connectors()


def test_connector_names_are_url_escaped():
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path)
        return connect_error(404, "not found")

    with ConnectClient("http://connect:8083", transport=httpx.MockTransport(handler)) as c:
        assert c.get_config("a/b c") is None
    assert seen == [b"/connectors/a%2Fb%20c/config"]


def test_restart_failed_asks_for_failed_tasks_only(client, fake):
    client.put_connector("c", CONFIG)
    client.restart_failed("c")
    client.restart("c")
    assert fake.restarts == [
        {"includeTasks": "true", "onlyFailed": "true"},
        {"includeTasks": "true", "onlyFailed": "false"},
    ]


def test_offsets_of_a_debezium_connector(client, fake):
    client.put_connector("c", CONFIG)
    assert client.get_offsets("c") == []
    fake.offsets["c"] = [
        {
            "partition": {"server": "binlake"},
            "offset": {"file": "mariadb-bin.000001", "pos": 1680, "row": 1, "event": 3},
        }
    ]
    [offset] = client.get_offsets("c")
    assert offset.partition == {"server": "binlake"}
    assert (offset.offset["file"], offset.offset["pos"]) == ("mariadb-bin.000001", 1680)
    with pytest.raises(ConnectHTTPError) as missing:
        client.get_offsets("nope")
    assert missing.value.status_code == 404

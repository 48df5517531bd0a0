"""Errors that advise: bad settings and services that do not answer give one line each, naming
what is wrong and what to do, never a traceback or librdkafka's log.

Commands run as real processes (librdkafka writes to the process's stderr, which CliRunner does
not see) or through CliRunner, against closed ports and real listeners on free ports."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from binlake.cli import app
from binlake.local_stack.network import free_port
from tests.support.processes import run_python_module

runner = CliRunner()


def clean_env(tmp_path, **settings: str) -> dict[str, str]:
    """Our environment without any BINLAKE_* variable, plus `settings`; a state dir of its own
    (no stack runs there)."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("BINLAKE_")}
    env["BINLAKE_STATE_DIR"] = str(tmp_path / "state")
    env.update(settings)
    return env


def closed_ports_env(tmp_path) -> dict[str, str]:
    """Every service the commands talk to on a port nothing listens on."""
    return clean_env(
        tmp_path,
        BINLAKE_KAFKA__BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
        BINLAKE_CONNECT__URL=f"http://127.0.0.1:{free_port()}",
        BINLAKE_MYSQL__PORT=str(free_port()),
    )


@pytest.mark.parametrize(
    ("args", "down"),
    [
        (
            [
                "replay",
                "--table",
                "shop.orders",
                "--from-time",
                "2026-01-01T00:00:00Z",
                "--dry-run",
            ],
            "Kafka broker",
        ),
        (["resync", "--table", "shop.orders", "--no-wait"], "Kafka broker"),
        (["connector", "status"], "Kafka Connect"),
        (["connector", "register"], "Kafka Connect, Kafka broker"),
    ],
)
def test_a_command_run_while_the_stack_is_down_says_so_in_one_line(tmp_path, args, down) -> None:
    result = run_python_module("binlake", *args, env=closed_ports_env(tmp_path), timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert f"the local stack under {tmp_path / 'state'} is not running ({down}" in line
    assert line.endswith("start it with `binlake up`")


def test_stopping_a_component_of_a_stack_that_is_not_running_says_to_start_it(tmp_path) -> None:
    result = run_python_module("binlake", "stop", "worker", env=clean_env(tmp_path), timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"the local stack under {tmp_path / 'state'} is not running: start it with `binlake up`"
    ]


def test_in_production_it_names_the_address_and_the_setting(tmp_path) -> None:
    env = closed_ports_env(tmp_path)
    env.update(BINLAKE_ENVIRONMENT="prod", BINLAKE_SILVER__PII_KEY="k")
    result = run_python_module("binlake", "connector", "status", env=env, timeout=60)
    assert result.returncode == 1
    connect = env["BINLAKE_CONNECT__URL"].removeprefix("http://")
    assert result.stderr.splitlines() == [
        f"Kafka Connect at {connect} (BINLAKE_CONNECT__URL) not answering: check that it runs "
        "and that the setting points to it"
    ]


@pytest.fixture
def connect_without_connector() -> Iterator[str]:
    """A real HTTP server answering every request as Connect does for an unknown connector."""

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"error_code": 404, "message": "Connector binlake-mysql not found"})
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_error_of_a_service_that_answers_is_that_error_in_one_line(
    settings, monkeypatch, connect_without_connector
) -> None:
    monkeypatch.setenv("BINLAKE_CONNECT__URL", connect_without_connector)
    result = runner.invoke(app, ["connector", "status"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "binlake connector failed: Kafka Connect GET /connectors/binlake-mysql/status failed "
        "(HTTP 404): Connector binlake-mysql not found"
    ]


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"BINLAKE_MYSQL__PASWORD": "hunter2"},
            "invalid setting BINLAKE_MYSQL__PASWORD is not a binlake setting; did you mean "
            "BINLAKE_MYSQL__PASSWORD?",
        ),
        (
            {"BINLAKE_STORAG_URL": "s3://bucket/lake"},
            "invalid setting BINLAKE_STORAG_URL is not a binlake setting; did you mean "
            "BINLAKE_STORAGE_URL?",
        ),
        (
            {"BINLAKE_MYSQL__PORT": "abc"},
            "invalid setting BINLAKE_MYSQL__PORT='abc': not an integer",
        ),
        (
            {"BINLAKE_TABLES": '["shop.orders", 3]'},  # brackets are no markup to the console
            "invalid setting BINLAKE_TABLES='[\"shop.orders\", 3]' (item 1): not a string",
        ),
        (
            {"BINLAKE_CONFIG": "/nonexistent/binlake.toml"},
            "invalid setting BINLAKE_CONFIG=/nonexistent/binlake.toml: no such file",
        ),
    ],
)
def test_bad_settings_stop_a_command_with_one_line_each(
    settings, monkeypatch, variables, expected
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["compact", "--dry-run"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [expected]
    assert "hunter2" not in result.output

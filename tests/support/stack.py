"""The real local stack for integration tests: MariaDB, a Kafka broker (KRaft), Kafka Connect +
Debezium, the Faust bronze worker and the Dagster webserver and daemon, in a temp state dir on
free ports (fixtures `running_stack`, `edge_stack`), and what tests read and wait for in it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from binlake.bronze.manifest import Manifest
from binlake.demo import lake_checks
from binlake.local_stack.stack import LocalStack
from binlake.local_stack.supervisor import ProgramState
from binlake.settings import Settings, load_settings
from binlake.silver.pii import PiiPolicy
from binlake.storage import LakeStorage


def integration_settings(state_dir: Path, **groups: dict[str, Any]) -> Settings:
    """Settings of a test stack on free ports; `groups` adds to a settings group (`mysql=`,
    `connect=`, ...) or sets a top-level setting (`tables=`)."""
    values: dict[str, Any] = {
        "mysql": {"port": 0},
        "kafka": {"bootstrap_servers": "127.0.0.1:0"},
        "connect": {"url": "http://127.0.0.1:0"},
        "dagster": {"port": 0, "sensor_interval_seconds": 1, "automation_interval_seconds": 2},
        "sql": {"port": 0},
    }
    for name, value in groups.items():
        values[name] = {**values.get(name, {}), **value} if isinstance(value, dict) else value
    return load_settings(state_dir=state_dir, **values)


def stack_of_tables(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    tables: list[str] | None = None,
    **groups: Any,
) -> Iterator[LocalStack]:
    """A started stack of its own, capturing `tables` (the demo tables when None), with
    `groups` as `integration_settings` takes them; stopped by PID when the fixture using it
    ends."""
    if tables is not None:
        groups["tables"] = tables
    settings = integration_settings(tmp_path_factory.mktemp(name), **groups)
    stack = LocalStack(settings)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    yield from stack_of_tables(tmp_path_factory, "stack")


def wait_for(
    what: str, condition: Callable[[], bool], timeout_s: float = 240, every_s: float = 1.0
) -> float:
    """Poll `condition` every `every_s` seconds until it holds; the seconds it took. A lake not
    written yet counts as False."""
    start = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - start
        except FileNotFoundError:
            pass
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"{what}: not reached after {timeout_s} s")
        time.sleep(every_s)


class SourceWriter(threading.Thread):
    """A thread changing source rows through the binlog until `stop` is set (its `run` is the
    test's); it counts the `changes` it made and keeps the `error` that ended it, if any."""

    def __init__(self, settings: Settings):
        super().__init__(daemon=True)
        self.settings = settings
        self.stop = threading.Event()
        self.changes = 0
        self.error: BaseException | None = None


# Tables of the shared "edge cases" stack (issue 11): one or more per case, each created and
# written by the test module that owns it, so the modules share one stack without sharing rows.
EDGE_TABLES = [
    "shop.edge_big",  # rows over 1 MB (tests/integration/test_large_records.py)
    "shop.edge_truncate",  # TRUNCATE (test_truncate_and_bits.py)
    "shop.edge_bits",  # BIT(1), BIT(5), BIT(64) (test_truncate_and_bits.py)
    "shop.edge_default",  # ADD COLUMN ... DEFAULT (test_ddl_edge_cases.py)
    "shop.edge_rename",  # CHANGE / RENAME COLUMN (test_ddl_edge_cases.py)
    "shop.edge_drop",  # DROP COLUMN (test_ddl_edge_cases.py)
    "shop.edge_resync",  # resync deleting rows silver holds and the source lost (test_resync.py)
]


@pytest.fixture(scope="session")
def edge_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One stack for the edge cases of issue 11, started once for every module that uses it."""
    yield from stack_of_tables(tmp_path_factory, "edge-stack", EDGE_TABLES)


def bronze_rows(settings: Settings, table: str) -> pl.DataFrame:
    """Every bronze row of `table` the manifest lists (an empty frame before the first file)."""
    storage = LakeStorage.from_url(settings.lake_url)
    frames = [
        pl.read_parquet(storage.full_path(entry.path))
        for entry in Manifest(storage).entries_for(table)
    ]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def component(stack: LocalStack, name: str) -> ProgramState:
    """supervisord's view of one component (its state and PID)."""
    return next(state for state in stack.components() if state.name == name)


def assert_silver_equals_source(settings: Settings, table: str, key: str = "id") -> None:
    """Wait until silver matches the source, then compare them value for value, row by row in
    key order (silver's personal-data columns masked as it masks them)."""
    wait_for(
        f"silver {table} equals the source",
        lambda: lake_checks.silver_equals_source(settings, table),
        timeout_s=300,
    )
    raw = lake_checks.source_table(settings, table).sort(key)
    source = PiiPolicy.from_settings(settings.silver).mask(raw, table, raw.columns, [key])
    silver = lake_checks.silver_without_provenance(settings, table).sort(key)
    assert silver.columns[: len(source.columns)] == source.columns
    assert silver.select(source.columns).rows() == source.rows(), table

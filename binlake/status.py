"""Per-table view of the lake for `binlake status`: source rows, newest bronze file, the bronze
writer's consumer lag (records and seconds, see `binlake.bronze.consumer_lag`), silver rows."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pymysql

from binlake.bronze.consumer_lag import (
    TableLag,
    lag_or_reason,
    measure_consumer_lag,
    records_text,
    seconds_text,
)
from binlake.bronze.manifest import Manifest, ManifestEntry, live_entries
from binlake.local_stack.components import dagster_home
from binlake.settings import Settings
from binlake.source_db import count_rows
from binlake.storage import LakeStorage
from cdc.connect_client import ConnectClient
from cdc.connector_health import HealthState, iso, summarize_trace
from cdc.health_watch import CONNECT_RETRY_SECONDS, observe
from dagster_defs.health.sensors import load_health_state
from dagster_defs.keys import silver_key
from dagster_defs.read import read_layer_table


@dataclass(frozen=True)
class TableStatus:
    table: str
    source_rows: int | None
    bronze_files: int
    newest_bronze_file: str | None
    newest_bronze_age_s: float | None
    silver_rows: int | None
    # The bronze writer's consumer lag; None with `lag_state` saying why ("no topic",
    # "no commit", "unknown: <error>"). `lag_records_exact` False: at least `lag_records`.
    lag_state: str = "ok"
    lag_records: int | None = None
    lag_records_exact: bool = True
    lag_seconds: float | None = None

    def lag_records_text(self) -> str:
        return records_text(self.lag_state, self.lag_records, self.lag_records_exact)

    def lag_seconds_text(self) -> str:
        return seconds_text(self.lag_state, self.lag_seconds)


def collect_table_status(settings: Settings) -> list[TableStatus]:
    newest: dict[str, ManifestEntry] = {}
    files: dict[str, int] = {}
    # The files bronze holds: not those compacted away or expired, nor a retention line.
    for entry in live_entries(Manifest(LakeStorage.from_settings(settings)).entries()):
        files[entry.table] = files.get(entry.table, 0) + 1
        if entry.table not in newest or entry.written_at > newest[entry.table].written_at:
            newest[entry.table] = entry
    lags = lag_or_reason(lambda: measure_consumer_lag(settings), settings.tables)
    statuses = []
    for table in settings.tables:
        try:
            source_rows = count_rows(settings, table)
        except pymysql.err.OperationalError:
            source_rows = None
        try:
            silver_rows = read_layer_table(settings, silver_key(table)).height
        except FileNotFoundError:
            silver_rows = None
        entry = newest.get(table)
        lag = lags[table]
        statuses.append(
            TableStatus(
                table=table,
                source_rows=source_rows,
                bronze_files=files.get(table, 0),
                newest_bronze_file=entry.path.rsplit("/", 1)[-1] if entry else None,
                newest_bronze_age_s=time.time() - entry.written_at if entry else None,
                silver_rows=silver_rows,
                **_lag_fields(lag),
            )
        )
    return statuses


def _lag_fields(lag: TableLag | str) -> dict[str, object]:
    if isinstance(lag, str):
        return {"lag_state": lag}
    return {
        "lag_state": lag.state,
        "lag_records": lag.records,
        "lag_records_exact": lag.exact,
        "lag_seconds": lag.seconds,
    }


@dataclass(frozen=True)
class TaskState:
    id: int
    state: str
    worker_id: str
    error: str | None  # summary of the task's trace: exception and 'Caused by' lines


@dataclass(frozen=True)
class CaptureStatus:
    """The Debezium connector as Connect reports it, and how long capture has been stopped.

    Two figures, each meaning something different:

    * ``first_seen_stopped_at``: when the ``connector_health`` sensor first saw the connector or
      a task FAILED (or Connect unreachable) in this episode; the failure happened at most one
      sensor interval (``connect.health_interval_seconds``) earlier. None without a sensor state
      (Dagster not running, or no failure seen yet).
    * ``newest_change_commit_at``: the newest source commit (``source.ts_ms``) held in bronze,
      over every captured table. Capture stopped after it; its age is an upper bound of how long
      capture has been stopped (exact only if the source was writing when it stopped).
    """

    connector: str
    state: str  # the connector's state; UNREACHABLE or MISSING when Connect gave no status
    tasks: list[TaskState]
    error: str | None  # summary of the first failure trace, or why there is no status
    capture_stopped: bool
    first_seen_stopped_at: float | None
    restarts: int | None  # restarts by the health sensor in this episode
    newest_change_commit_at: float | None
    checked_at: float

    @property
    def stopped_for_s(self) -> float | None:
        if not self.capture_stopped or self.first_seen_stopped_at is None:
            return None
        return max(0.0, self.checked_at - self.first_seen_stopped_at)

    @property
    def newest_change_age_s(self) -> float | None:
        if self.newest_change_commit_at is None:
            return None
        return max(0.0, self.checked_at - self.newest_change_commit_at)

    def stopped_text(self) -> str:
        """How long capture has been stopped, saying what each figure means."""
        if not self.capture_stopped:
            return "capture running"
        parts = []
        if self.first_seen_stopped_at is not None:
            parts.append(
                f"first seen stopped by the connector_health sensor {self.stopped_for_s:.0f} s ago "
                f"({iso(self.first_seen_stopped_at)}; failed at most one sensor interval before)"
            )
        else:
            parts.append("not seen by the connector_health sensor yet (is Dagster running?)")
        if self.newest_change_commit_at is not None:
            parts.append(
                f"newest change in bronze committed {self.newest_change_age_s:.0f} s ago "
                f"({iso(self.newest_change_commit_at)}): capture stopped at most that long ago"
            )
        return "; ".join(parts)


def collect_capture_status(
    settings: Settings,
    *,
    now: float | None = None,
    health: HealthState | None = None,
    connect: ConnectClient | None = None,
) -> CaptureStatus:
    """`health`: the connector_health sensor's state; read from the Dagster instance if None."""
    connector = settings.connect.connector_name
    if connect is None:
        with ConnectClient(
            settings.connect.url, timeout=5.0, retry_for_s=CONNECT_RETRY_SECONDS
        ) as client:
            observed = observe(client, connector)
    else:
        observed = observe(connect, connector)
    if health is None:
        health = _health_state(settings) or HealthState()
    episode = health.stopped_since is not None and observed.capture_stopped
    return CaptureStatus(
        connector=connector,
        state=observed.state,
        tasks=[
            TaskState(
                t.id, t.state, t.worker_id, _summary(t.trace) if t.state != "RUNNING" else None
            )
            for t in observed.tasks
        ],
        error=observed.error_summary(),
        capture_stopped=observed.capture_stopped,
        first_seen_stopped_at=health.stopped_since if episode else None,
        restarts=health.restarts if episode else None,
        newest_change_commit_at=_newest_change_commit(settings),
        checked_at=time.time() if now is None else now,
    )


def _summary(trace: str | None) -> str | None:
    return summarize_trace(trace) if trace else None


def _newest_change_commit(settings: Settings) -> float | None:
    captured = set(settings.tables)
    newest = max(
        (
            e.max_source_ts_ms
            for e in Manifest(LakeStorage.from_settings(settings)).entries()
            if e.table in captured and e.max_source_ts_ms is not None
        ),
        default=None,
    )
    return None if newest is None else newest / 1000


def _health_state(settings: Settings) -> HealthState | None:
    """The connector_health sensor's state from the Dagster instance, if one is reachable."""
    home = os.environ.get("DAGSTER_HOME") or str(dagster_home(settings))
    if not (Path(home) / "dagster.yaml").is_file():
        return None
    try:
        with dg.DagsterInstance.from_config(home) as instance:
            return load_health_state(instance, settings.connect.connector_name)
    except Exception:  # noqa: BLE001 - status shows what it can; the sensor state is extra
        return None

"""What `binlake status` shows, the health page: the local stack's components, the connector and
its tasks, each layer's lag behind the source (seconds from the freshness table the freshness
sensor writes, records from the consumer lag and the bronze manifest), per table source rows,
consumer lag and silver rows, the newest gold hour, failing asset checks and the addresses of the
Dagster UI and the SQL endpoint.

Each part is collected on its own and, when what it needs does not answer, says so
(`Unavailable`: "down: run `binlake up`" when the stack is not running) instead of failing the
page. Rendering is `binlake.status_page`'s.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import dagster as dg
import httpx
import pyarrow.compute as pc
import pymysql
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from binlake.bronze.consumer_lag import (
    TableLag,
    lag_or_reason,
    measure_consumer_lag,
    records_text,
    seconds_text,
)
from binlake.bronze.manifest import Manifest, ManifestEntry, live_entries
from binlake.freshness import LAYERS, RowsAfter, bronze_rows_after
from binlake.freshness_table import FreshnessRow, read_freshness_rows
from binlake.gold.tables import GOLD_TABLE_NAMES, gold_table_uri
from binlake.local_stack.components import dagster_home
from binlake.local_stack.stack import LocalStack
from binlake.local_stack.supervisor import ProgramState
from binlake.settings import Settings
from binlake.source_db import count_rows
from binlake.storage import LakeStorage
from cdc.connect_client import ConnectClient
from cdc.connector_health import HealthState, iso, summarize_trace
from cdc.health_watch import CONNECT_RETRY_SECONDS, observe
from dagster_defs.definitions import build_definitions
from dagster_defs.freshness.check import FRESHNESS_SENSOR_INTERVAL_SECONDS
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


# -- the health page ------------------------------------------------------------------------------

DOWN = "down: run `binlake up`"
T = TypeVar("T")
PROBE_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Unavailable:
    """A part of the page that could not be collected, and why."""

    reason: str


@dataclass(frozen=True)
class LayerLag:
    """One layer's lag behind the source: the worst of its freshness checks (seconds, as the
    freshness sensor last measured them) and the records it lacks, summed over its tables."""

    layer: str
    lag_seconds: float | None  # None: unknown for every asset of the layer
    slo_seconds: float
    records: int | None  # None: unknown (the broker did not answer)
    records_exact: bool  # False: an estimate (see `binlake.freshness.bronze_rows_after`)
    checks: int
    failing: int

    def records_text(self) -> str:
        if self.records is None:
            return "unknown"
        return f"{self.records}" if self.records_exact else f"~{self.records}"


@dataclass(frozen=True)
class LakeLag:
    """The freshness table's rows folded per layer, and when the sensor wrote them."""

    checked_at: float
    layers: list[LayerLag]


@dataclass(frozen=True)
class GoldHour:
    table: str
    newest_hour: datetime | None  # None: no gold yet


@dataclass(frozen=True)
class FailingCheck:
    check: str  # "<asset>:<check>", as the Dagster UI names it
    severity: str
    description: str
    evaluated_at: float


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    up: bool


@dataclass(frozen=True)
class HealthPage:
    checked_at: float
    state_dir: str
    running: bool
    components: list[ProgramState] | Unavailable
    capture: CaptureStatus | Unavailable
    lag: LakeLag | Unavailable
    tables: list[TableStatus] | Unavailable
    gold: list[GoldHour] | Unavailable
    failing_checks: list[FailingCheck] | Unavailable
    endpoints: list[Endpoint]


def collect_health_page(stack: LocalStack, *, now: float | None = None) -> HealthPage:
    """Every part of the page; a part whose sources do not answer is `Unavailable`."""
    settings = stack.settings
    running = stack.is_running()
    components = stack.components() if running else []
    checked_at = time.time() if now is None else now
    storage = LakeStorage.from_settings(settings)
    consumer: dict[str, TableLag | str] = (
        lag_or_reason(lambda: measure_consumer_lag(settings), settings.tables)
        if running
        else dict.fromkeys(settings.tables, "unknown: stack down")
    )
    return HealthPage(
        checked_at=checked_at,
        state_dir=str(settings.state_dir),
        running=running,
        components=components if running else Unavailable(DOWN),
        capture=_part(running, lambda: collect_capture_status(settings), needs_stack=True),
        lag=_part(running, lambda: collect_lake_lag(settings, storage, consumer)),
        tables=_part(running, lambda: collect_table_status(settings), needs_stack=True),
        gold=_part(running, lambda: collect_gold_hours(storage)),
        failing_checks=_part(running, lambda: collect_failing_checks(settings)),
        endpoints=collect_endpoints(settings),
    )


def _part(running: bool, collect: Callable[[], T], *, needs_stack: bool = False) -> T | Unavailable:
    """`collect()`, or why it could not be: the stack is down, or what went wrong.

    Parts that read only the lake and the Dagster instance's storage (lag, gold, failing checks)
    are collected while the stack is down too: they show the last state the stack left.
    """
    if needs_stack and not running:
        return Unavailable(DOWN)
    try:
        return collect()
    except Exception as exc:  # noqa: BLE001 - the page shows every other part whatever this one does
        first_line = (str(exc).strip().splitlines() or [""])[0][:160]
        reason = f"{type(exc).__name__}: {first_line}"
        return Unavailable(f"{DOWN} ({reason})" if not running else f"unavailable: {reason}")


def collect_lake_lag(
    settings: Settings, storage: LakeStorage, consumer: Mapping[str, TableLag | str]
) -> LakeLag | Unavailable:
    """Each layer's lag: seconds from the freshness table, records from the consumer lag (not in
    bronze) plus the bronze rows newer than the layer's newest source commit (silver, gold)."""
    rows = read_freshness_rows(storage)
    if rows is None:
        return Unavailable(
            "no freshness results yet: the binlake_freshness sensor writes them every "
            f"{FRESHNESS_SENSOR_INTERVAL_SECONDS} s while Dagster runs"
        )
    live = live_entries(Manifest(storage).entries())
    layers = []
    for layer in LAYERS:
        of_layer = [r for r in rows if r.layer == layer]
        if not of_layer:
            continue
        known = [r.lag_seconds for r in of_layer if r.lag_seconds is not None]
        records, exact = _records_behind(layer, of_layer, live, consumer)
        layers.append(
            LayerLag(
                layer=layer,
                lag_seconds=max(known, default=None),
                slo_seconds=max(r.slo_seconds for r in of_layer),
                records=records,
                records_exact=exact,
                checks=len(of_layer),
                failing=sum(not r.passed for r in of_layer),
            )
        )
    return LakeLag(max(r.checked_at for r in rows), layers)


def _records_behind(
    layer: str,
    rows: list[FreshnessRow],
    live: list[ManifestEntry],
    consumer: Mapping[str, TableLag | str],
) -> tuple[int | None, bool]:
    total, exact = 0, True
    # A table feeding several assets of the layer counts once, at its worst.
    worst: dict[str, RowsAfter] = {}
    for row in rows:
        for table in row.source_tables:
            if layer == "bronze":
                continue
            after = bronze_rows_after(live, table, row.newest_source_commit)
            if table not in worst or after.rows > worst[table].rows:
                worst[table] = after
    for table in {t for row in rows for t in row.source_tables}:
        lag = consumer.get(table)
        if not isinstance(lag, TableLag):
            return None, False
        if lag.state == "ok" and lag.records is not None:
            total += lag.records
            exact = exact and lag.exact
        if table in worst:
            total += worst[table].rows
            exact = exact and worst[table].exact
    return total, exact


def collect_gold_hours(storage: LakeStorage) -> list[GoldHour]:
    """The newest hour of each gold Delta table (None before the first gold run)."""
    hours = []
    for name in GOLD_TABLE_NAMES:
        try:
            table = DeltaTable(
                gold_table_uri(storage.url, name), storage_options=storage.storage_options
            )
        except TableNotFoundError:
            hours.append(GoldHour(name, None))
            continue
        newest = pc.max(table.to_pyarrow_dataset().to_table(columns=["hour"])["hour"]).as_py()
        hours.append(GoldHour(name, newest))
    return hours


def collect_failing_checks(settings: Settings) -> list[FailingCheck] | Unavailable:
    """The asset checks whose latest evaluation failed, from the Dagster instance's storage."""
    home = os.environ.get("DAGSTER_HOME") or str(dagster_home(settings))
    if not (Path(home) / "dagster.yaml").is_file():
        return Unavailable(f"no Dagster instance in {home}: {DOWN}")
    keys = list(build_definitions(settings).resolve_asset_graph().asset_check_keys)
    with dg.DagsterInstance.from_config(home) as instance:
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    failing = []
    for key, record in latest.items():
        if record.status != AssetCheckExecutionRecordStatus.FAILED or record.event is None:
            continue
        dagster_event = record.event.dagster_event
        evaluation = dagster_event.event_specific_data if dagster_event else None
        failing.append(
            FailingCheck(
                check=key.to_user_string(),
                severity=getattr(getattr(evaluation, "severity", None), "value", "ERROR"),
                description=getattr(evaluation, "description", None) or "",
                evaluated_at=record.event.timestamp,
            )
        )
    return sorted(failing, key=lambda f: f.check)


def collect_endpoints(settings: Settings) -> list[Endpoint]:
    """The Dagster UI and the SQL endpoint, each with whether it answered."""
    dagster_url = f"http://{settings.dagster.host}:{settings.dagster.port}"
    endpoints = [Endpoint("Dagster UI", dagster_url, _answers(f"{dagster_url}/server_info"))]
    sql_url = f"http://{settings.sql.host}:{settings.sql.port}"
    endpoints.append(Endpoint("SQL endpoint", sql_url, _answers(f"{sql_url}/ping")))
    return endpoints


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=PROBE_TIMEOUT_S).status_code < 500
    except httpx.HTTPError:
        return False


def page_json(page: HealthPage) -> dict[str, object]:
    """The page as JSON-ready data (`binlake status --json`), with the capture's derived
    figures (``stopped_for_s``, ``newest_change_age_s``) beside its fields."""
    data = asdict(page)
    if isinstance(page.capture, CaptureStatus):
        data["capture"] = {
            **data["capture"],
            "stopped_for_s": page.capture.stopped_for_s,
            "newest_change_age_s": page.capture.newest_change_age_s,
        }
    return data

"""`binlake status`, the health page: collected from a real temp lake (freshness table, bronze
manifest, gold Delta table) and a real Dagster instance on disk with nothing else running, and
rendered at 80 columns."""

from __future__ import annotations

import json
import socket
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import write_deltalake
from rich.console import Console
from typer.testing import CliRunner

from binlake.bronze.consumer_lag import table_lag
from binlake.bronze.manifest import Manifest, live_entries
from binlake.cli import app
from binlake.freshness import bronze_rows_after
from binlake.freshness_table import FreshnessRow, write_freshness_table
from binlake.gold.tables import gold_table_uri
from binlake.local_stack.components import dagster_home
from binlake.local_stack.stack import LocalStack
from binlake.local_stack.supervisor import ProgramState
from binlake.settings import Settings, load_settings
from binlake.status import (
    DOWN,
    CaptureStatus,
    Endpoint,
    FailingCheck,
    GoldHour,
    HealthPage,
    LakeLag,
    LayerLag,
    TableStatus,
    TaskState,
    Unavailable,
    collect_endpoints,
    collect_failing_checks,
    collect_gold_hours,
    collect_health_page,
    collect_lake_lag,
    page_json,
)
from binlake.status_page import render_capture, render_page, watch_page
from binlake.storage import LakeStorage
from dagster_defs.keys import silver_key

runner = CliRunner()
T0 = 1_717_236_000.0  # 2024-06-01 10:00:00 UTC, the bronze fixture's BASE_TS_MS in seconds
WIDTH = 80


def rendered(renderable, width: int = WIDTH) -> str:
    console = Console(width=width, record=True, color_system=None)
    with console.capture() as captured:
        console.print(renderable)
    return captured.get()


def assert_fits(text: str) -> None:
    too_long = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not too_long, "\n".join(too_long)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nothing_running(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`settings` whose every port is free: nothing of the stack answers."""
    monkeypatch.setenv("BINLAKE_DAGSTER__PORT", str(free_port()))
    monkeypatch.setenv("BINLAKE_CONNECT__URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("BINLAKE_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("BINLAKE_MYSQL__PORT", str(free_port()))
    monkeypatch.setenv("BINLAKE_SQL__PORT", str(free_port()))
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    return load_settings()


def full_page() -> HealthPage:
    error = (
        "org.apache.kafka.connect.errors.ConnectException: An exception occurred in the change "
        "event producer. This connector will be stopped.\nCaused by: org.apache.kafka.common."
        "errors.RecordTooLargeException: The message is 2097152 bytes when serialized which is "
        "larger than 1048576, the value of the max.request.size configuration."
    )
    return HealthPage(
        checked_at=T0 + 100,
        state_dir="/home/operator/.local/state/binlake-with-a-rather-long-directory-name/x/y",
        running=True,
        components=[
            ProgramState("broker", "RUNNING", 4242, 3605.2, "/tmp/logs/broker.log"),
            ProgramState("bronze_worker", "FATAL", 0, 0.0, "/tmp/logs/bronze_worker.log"),
        ],
        capture=CaptureStatus(
            connector="binlake-mysql",
            state="RUNNING",
            tasks=[TaskState(0, "FAILED", "127.0.0.1:8083", error)],
            error=error,
            capture_stopped=True,
            first_seen_stopped_at=T0 + 10,
            restarts=3,
            newest_change_commit_at=T0 - 40,
            checked_at=T0 + 100,
        ),
        lag=LakeLag(
            T0 + 70,
            [
                LayerLag("bronze", 0.0, 60.0, 0, True, 5, 0),
                LayerLag("silver", 185.4, 120.0, 1234, False, 5, 2),
                LayerLag("gold", None, 300.0, None, False, 1, 0),
            ],
        ),
        tables=[
            TableStatus(
                "shop.order_items", 123456789, 12, "f.parquet", 5.0, 123456000, "ok", 17, True, 2.4
            ),
            TableStatus("shop.customers", None, 0, None, None, None, "unknown: broker down"),
        ],
        gold=[GoldHour("orders_by_hour_status", datetime(2024, 6, 1, 9, tzinfo=UTC))],
        failing_checks=[
            FailingCheck(
                "silver/shop/orders:freshness", "ERROR", "silver is 185 s behind " * 20, T0
            )
        ],
        endpoints=[
            Endpoint("Dagster UI", "http://127.0.0.1:13000", True),
            Endpoint("SQL endpoint", "http://127.0.0.1:8123", False),
        ],
    )


def test_the_page_reads_at_80_columns_and_says_everything():
    text = rendered(render_page(full_page()))
    assert_fits(text)
    for expected in (
        "binlake status 2024-06-01 10:01:40Z",
        "broker",
        "FATAL",
        "binlake-mysql",
        "task 0",
        "max.request.size",
        "first seen stopped by the connector_health sensor 90 s ago",
        "(3 restart(s) by the health sensor)",
        "lag behind the source (measured 30 s ago)",
        "185 s",
        "~1234",
        "2 of 5 failing",
        "unknown",
        "shop.order_items",
        "123456789",
        "17",
        "2 s",
        "lag unknown: broker down: shop.customers",
        "newest gold hour: orders_by_hour_status 2024-06-01 09:00",
        "failing checks: 1",
        "silver/shop/orders:freshness (ERROR)",
        "Dagster UI: http://127.0.0.1:13000 up",
        "SQL endpoint: http://127.0.0.1:8123 down: run `binlake up`",
    ):
        assert expected in text, expected
    assert "..." in text  # the long description is cut; the Dagster UI has it whole


def test_a_stopped_connector_shows_its_task_error_and_how_long():
    text = rendered(render_capture(full_page().capture))
    assert_fits(text)
    text = " ".join(text.split())
    assert "Caused by:" in text and "FAILED" in text
    assert "newest change in bronze committed 140 s ago" in text


def test_with_nothing_running_every_part_says_so(nothing_running: Settings):
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert_fits(result.output)
    for part in ("components", "capture", "tables"):
        assert f"{part}: {DOWN}" in result.output
    assert "lag behind the source: no freshness results yet" in result.output
    assert "newest gold hour: orders_by_hour_status no gold yet" in result.output
    assert "failing checks: no Dagster instance in" in result.output
    assert f"Dagster UI: http://127.0.0.1:{nothing_running.dagster.port} {DOWN}" in result.output
    assert f"SQL endpoint: http://127.0.0.1:{nothing_running.sql.port} {DOWN}" in result.output


def test_json_and_the_watch_argument(nothing_running: Settings):
    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    assert '"components": {' in result.output and DOWN in result.output
    alone = runner.invoke(app, ["status", "3"])
    assert alone.exit_code == 2 and "SECONDS goes with --watch" in alone.output


def test_watch_redraws_the_page(nothing_running: Settings):
    stack = LocalStack(nothing_running)
    collected: list[float] = []
    slept: list[float] = []

    def collect() -> HealthPage:
        page = collect_health_page(stack, now=T0 + len(collected))
        collected.append(page.checked_at)
        return page

    console = Console(width=WIDTH, record=True, color_system=None, force_terminal=True)
    watch_page(collect, console, 2.5, frames=3, sleep=slept.append)
    assert (collected, slept) == ([T0, T0 + 1, T0 + 2], [2.5, 2.5])
    assert "binlake status 2024-06-01 10:00:02Z" in console.export_text()


# -- the parts, from a real lake and a real Dagster instance ---------------------------------------


def test_the_lag_per_layer_comes_from_the_freshness_table_and_the_bronze_files(settings, bronze):
    orders, items = "shop.orders", "shop.order_items"
    c = bronze.change
    bronze.write(orders, [c("c", 0, ts_ms=int(T0 * 1000), id=1, customer_id=1)])
    later = int((T0 + 60) * 1000)
    bronze.write(orders, [c("u", 1, ts_ms=later, id=1), c("u", 2, ts_ms=later, id=1)])
    bronze.write(items, [c("c", 0, ts_ms=int(T0 * 1000), id=1, order_id=1)])
    storage = LakeStorage.from_settings(settings)
    rows = [
        FreshnessRow("bronze", "bronze/shop/orders", (orders,), T0 + 60, 0.0, 60.0, True, T0 + 90),
        FreshnessRow("bronze", "bronze/shop/order_items", (items,), T0, 0.0, 60.0, True, T0 + 90),
        # silver holds orders up to T0: the second file's two rows are missing
        FreshnessRow("silver", "silver/shop/orders", (orders,), T0, 90.0, 120.0, True, T0 + 90),
        FreshnessRow(
            "gold",
            "gold/shop/orders_by_hour_status",
            (orders, items),
            None,
            None,
            300.0,
            True,
            T0 + 90,
        ),
    ]
    write_freshness_table(storage, rows)
    consumer = {
        orders: table_lag(orders, "binlake.shop.orders", "g", []),
        items: table_lag(items, "binlake.shop.order_items", "g", []),
    }
    lag = collect_lake_lag(settings, storage, consumer)
    assert isinstance(lag, LakeLag) and lag.checked_at == T0 + 90
    by_layer = {layer.layer: layer for layer in lag.layers}
    assert by_layer["bronze"] == LayerLag("bronze", 0.0, 60.0, 0, True, 2, 0)
    assert by_layer["silver"] == LayerLag("silver", 90.0, 120.0, 2, True, 1, 0)
    # gold holds nothing yet: every bronze row of both tables
    assert by_layer["gold"] == LayerLag("gold", None, 300.0, 4, True, 1, 0)
    broker_down = dict.fromkeys((orders, items), "unknown: broker down")
    unknown = collect_lake_lag(settings, storage, broker_down)
    assert isinstance(unknown, LakeLag)
    assert [layer.records_text() for layer in unknown.layers] == ["unknown"] * 3


def test_rows_after_a_commit_count_whole_files_and_say_when_a_file_straddles(settings, bronze):
    c = bronze.change
    bronze.write("shop.orders", [c("c", 0, ts_ms=int(T0 * 1000), id=1, customer_id=1)])
    bronze.write(
        "shop.orders",
        [c("u", 1, ts_ms=int((T0 + 10) * 1000), id=1), c("u", 2, ts_ms=int((T0 + 20) * 1000))],
    )
    live = live_entries(Manifest(LakeStorage.from_settings(settings)).entries())
    after = bronze_rows_after
    assert (after(live, "shop.orders", None).rows, after(live, "shop.orders", None).exact) == (
        3,
        True,
    )
    assert after(live, "shop.orders", T0).rows == 2 and after(live, "shop.orders", T0).exact
    straddled = after(live, "shop.orders", T0 + 10)
    assert (straddled.rows, straddled.exact) == (2, False)  # at most 2: one of them is held
    assert after(live, "shop.orders", T0 + 20).rows == 0
    assert after(live, "shop.order_items", None).rows == 0


def test_the_newest_gold_hour_or_no_gold_yet(settings):
    storage = LakeStorage.from_settings(settings)
    assert collect_gold_hours(storage) == [GoldHour("orders_by_hour_status", None)]
    hours = [datetime(2024, 6, 1, h, tzinfo=UTC) for h in (8, 10, 9)]
    write_deltalake(
        gold_table_uri(storage.url, "orders_by_hour_status"),
        pa.table(
            {
                "hour": pa.array(hours, pa.timestamp("us", tz="UTC")),
                "status": ["new", "paid", "new"],
                "orders": pa.array([1, 2, 3], pa.int64()),
            }
        ),
    )
    [gold] = collect_gold_hours(storage)
    assert gold.newest_hour == datetime(2024, 6, 1, 10, tzinfo=UTC)


def test_failing_checks_are_the_latest_failed_evaluations_in_the_instance(settings):
    home = dagster_home(settings)
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    orders, items = silver_key("shop.orders"), silver_key("shop.order_items")

    def evaluate(instance, key, passed: bool, text: str) -> None:
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=key, check_name="freshness", passed=passed, description=text
            )
        )

    with dg.DagsterInstance.from_config(str(home)) as instance:
        evaluate(instance, orders, False, "silver is 300 s behind shop.orders")
        evaluate(instance, items, False, "silver is 500 s behind shop.order_items")
        evaluate(instance, items, True, "lag 0 s")  # the latest evaluation counts
    [failing] = collect_failing_checks(settings)
    assert (failing.check, failing.severity) == ("silver/shop/orders:freshness", "ERROR")
    assert failing.description == "silver is 300 s behind shop.orders"


def test_no_dagster_instance_is_said(settings):
    missing = collect_failing_checks(settings)
    assert isinstance(missing, Unavailable) and DOWN in missing.reason


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_endpoints_say_whether_they_answer(settings, monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("BINLAKE_DAGSTER__PORT", str(server.server_address[1]))
        monkeypatch.setenv("BINLAKE_SQL__PORT", str(server.server_address[1]))
        dagster, sql = collect_endpoints(load_settings())
        assert sql == Endpoint("SQL endpoint", f"http://127.0.0.1:{server.server_address[1]}", True)
        assert dagster == Endpoint(
            "Dagster UI", f"http://127.0.0.1:{server.server_address[1]}", True
        )
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setenv("BINLAKE_DAGSTER__PORT", str(free_port()))
    [dagster] = [e for e in collect_endpoints(load_settings()) if e.name == "Dagster UI"]
    assert not dagster.up


def test_the_stack_down_still_shows_what_the_lake_last_said(nothing_running: Settings):
    storage = LakeStorage.from_settings(nothing_running)
    row = FreshnessRow("silver", "silver/shop/orders", ("shop.orders",), T0, 0.0, 120.0, True, T0)
    write_freshness_table(storage, [row])
    page = collect_health_page(LocalStack(nothing_running), now=T0 + 600)
    assert isinstance(page.lag, LakeLag)
    [silver] = page.lag.layers
    assert (silver.lag_seconds, silver.records_text()) == (0.0, "unknown")  # broker down
    text = rendered(render_page(page))
    assert "measured 600 s ago" in text and "is Dagster running?" in text
    assert_fits(text)


def test_the_json_keeps_the_capture_figures():
    data = json.loads(json.dumps(page_json(full_page()), default=str))
    assert data["capture"]["stopped_for_s"] == 90 and data["capture"]["newest_change_age_s"] == 140
    assert data["capture"]["tasks"][0]["state"] == "FAILED"
    assert [c["name"] for c in data["components"]] == ["broker", "bronze_worker"]
    assert data["lag"]["layers"][1]["records"] == 1234
    assert data["failing_checks"][0]["check"] == "silver/shop/orders:freshness"

"""binlake.sql.server_sync: the views a ClickHouse server gets, checked by ClickHouse's own
parser and engine (chDB 26.x), applied over real HTTP to a real engine."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import chdb
import pytest
from chdb.session import Session
from deltalake import write_deltalake
from typer.testing import CliRunner

from binlake.cli import app as cli_app
from binlake.settings import Settings, load_settings
from binlake.sql import server_sync
from binlake.sql.views import lake_views, render_views_sql
from tests.support.sql_lake import GOLD_HOURS, LIVE_ORDERS, write_sql_lake

ADMIN, ADMIN_PASSWORD = "binlake", "admin-secret-7"


def parse(statement: str) -> str:
    """ClickHouse's own parser: the statement formatted, or a syntax error."""
    literal = "'" + statement.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return chdb.query(f"SELECT formatQuery({literal})", "TSVRaw").bytes().decode()


class ChdbHttpServer:
    """ClickHouse's HTTP interface, the part apply-views uses, over one chDB session: each POST
    body is one statement; the user and password travel in X-ClickHouse-User/-Key."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.statements: list[str] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                auth = (self.headers["X-ClickHouse-User"], self.headers["X-ClickHouse-Key"])
                if auth != (ADMIN, ADMIN_PASSWORD):
                    self._answer(516, f"Code: 516. {auth[0]}: Authentication failed")
                    return
                with owner.lock:
                    owner.statements.append(body)
                    try:
                        answer = owner.session.query(body, "TSVRaw").bytes().decode()
                    except RuntimeError as exc:  # the engine's error is the HTTP answer
                        self._answer(500, str(exc))
                        return
                self._answer(200, answer)

            def _answer(self, status: int, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    # Like a server, the engine reads local Delta tables only inside its user files path,
    # which for a temporary chDB session is the working directory; the lake is made there.
    monkeypatch.chdir(tmp_path)
    s = Session()
    yield s
    s.close()


@pytest.fixture
def server(session: Session) -> Iterator[ChdbHttpServer]:
    http = ChdbHttpServer(session)
    yield http
    http.close()


@pytest.fixture
def local_settings(tmp_path: Path) -> Settings:
    lake = write_sql_lake(tmp_path / "lake")
    return load_settings(
        state_dir=tmp_path / "state", storage_url=str(lake), tables=["shop.orders"]
    )


@pytest.fixture
def s3_views_sql(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """The server views of compose's lake (s3://lake/binlake at the seaweedfs endpoint), every
    configured table whether it exists yet or not."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://seaweedfs:8333")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "never-in-a-view")
    settings = load_settings(state_dir=tmp_path / "state", storage_url="s3://lake/binlake")
    views = lake_views(settings, target="server", existing_only=False)
    return render_views_sql(views, target="server")


def test_statements_split_at_semicolons_outside_quotes_and_comments() -> None:
    sql = (
        "CREATE DATABASE a; -- a comment; still a comment\n"
        "SELECT 'x;y', `we;ird`, 'it\\'s; fine' /* c; */ FROM t;\n\n  ;"
    )
    assert server_sync.split_statements(sql) == [
        "CREATE DATABASE a",
        "SELECT 'x;y', `we;ird`, 'it\\'s; fine'  FROM t",
    ]


def test_server_plan_reads_each_delta_table_through_a_table(s3_views_sql: str) -> None:
    """Every view of the rendered SQL is kept, none calls a table function any more, each reads
    a DeltaLake table of lake_source through the named collection, with its creator's rights;
    ClickHouse's parser accepts every statement."""
    plan = server_sync.plan_server_views(s3_views_sql)
    rendered_views = re.findall(r"VIEW lake\.`([^`]+)`", s3_views_sql)
    assert sorted(plan.views) == sorted(rendered_views)
    assert {"shop__orders", "gold__orders_by_hour_status", "freshness"} <= set(plan.views)
    # One source table per Delta table: a table's current state and provenance views share it.
    assert len(plan.sources) == len(set(re.findall(r"url = '([^']+)'", s3_views_sql)))
    for name, create in plan.sources.items():
        assert re.fullmatch(
            rf"CREATE OR REPLACE TABLE lake_source\.{name} ENGINE = DeltaLake\(binlake_lake, "
            r"url = 'http://seaweedfs:8333/lake/binlake/[a-z_/]+/'\)",
            create,
        ), create
    for create in plan.views.values():
        assert "deltaLake" not in create and "lake_source.delta_" in create
        assert server_sync.definer_clause() in create
    for statement in plan.statements():
        formatted = parse(statement)
        assert "never-in-a-view" not in statement
        if statement in plan.views.values():
            assert "SQL SECURITY DEFINER" in formatted


def test_source_names_are_stable_and_distinct() -> None:
    a = server_sync.source_table_name("DeltaLake", "binlake_lake, url = 'http://s/a/'")
    assert a == server_sync.source_table_name("DeltaLake", "binlake_lake, url = 'http://s/a/'")
    assert a != server_sync.source_table_name("DeltaLake", "binlake_lake, url = 'http://s/b/'")
    assert a != server_sync.source_table_name("DeltaLakeLocal", "binlake_lake, url = 'http://s/a/'")


def test_a_table_function_outside_a_view_is_refused() -> None:
    with pytest.raises(server_sync.ViewSyncError, match="outside a view"):
        server_sync.plan_server_views("INSERT INTO t SELECT * FROM deltaLakeLocal('/x');")


def test_applied_views_serve_a_readonly_reader(
    local_settings: Settings, server: ChdbHttpServer, session: Session, tmp_path: Path
) -> None:
    """Applied over HTTP to a real engine, the views answer with readonly = 1 (which refuses
    table functions, even inside a view), hide tombstones, and see a new Delta commit on the
    next query."""
    sql = render_views_sql(lake_views(local_settings, target="server"), target="server")
    client = server_sync.ClickHouseHttp(server.url, ADMIN, ADMIN_PASSWORD)
    result = server_sync.apply_plan(client, server_sync.plan_server_views(sql))
    client.close()
    assert (result.views, result.sources, result.dropped) == (4, 3, [])

    def readonly(query: str) -> str:
        return session.query(f"{query} SETTINGS readonly = 1", "TSVRaw").bytes().decode()

    assert readonly("SELECT count() FROM lake.shop__orders").strip() == str(LIVE_ORDERS)
    assert readonly("SELECT count() FROM lake.gold__orders_by_hour_status").strip() == "4"
    assert readonly("SELECT count() FROM lake.freshness").strip() == "2"
    lake = Path(local_settings.lake_url)
    with pytest.raises(RuntimeError, match="readonly"):
        readonly(f"SELECT count() FROM deltaLakeLocal('{lake}/gold/orders_by_hour_status')")
    gold = session.query(
        f"SELECT * FROM deltaLakeLocal('{lake}/gold/orders_by_hour_status') LIMIT 1", "ArrowTable"
    )
    write_deltalake(f"{lake}/gold/orders_by_hour_status", gold, mode="append")
    assert readonly("SELECT count() FROM lake.gold__orders_by_hour_status").strip() == "5"
    hours = readonly("SELECT count(DISTINCT hour) FROM lake.gold__orders_by_hour_status")
    assert hours.strip() == str(len(GOLD_HOURS))


def test_views_no_longer_rendered_are_dropped(
    local_settings: Settings, server: ChdbHttpServer, session: Session
) -> None:
    views = lake_views(local_settings, target="server")
    client = server_sync.ClickHouseHttp(server.url, ADMIN, ADMIN_PASSWORD)
    server_sync.apply_plan(
        client, server_sync.plan_server_views(render_views_sql(views, target="server"))
    )
    fewer = [v for v in views if not v.name.startswith("shop__")]
    result = server_sync.apply_plan(
        client, server_sync.plan_server_views(render_views_sql(fewer, target="server"))
    )
    client.close()
    assert sorted(d for d in result.dropped if d.startswith("lake.")) == [
        "lake.shop__orders",
        "lake.shop__orders__provenance",
    ]
    assert len([d for d in result.dropped if d.startswith("lake_source.")]) == 1
    tables = session.query("SELECT name FROM system.tables WHERE database = 'lake'", "TSVRaw")
    assert sorted(tables.bytes().decode().split()) == ["freshness", "gold__orders_by_hour_status"]


def test_a_refusal_names_the_statement_and_not_the_password(server: ChdbHttpServer) -> None:
    client = server_sync.ClickHouseHttp(server.url, ADMIN, ADMIN_PASSWORD)
    with pytest.raises(server_sync.ViewSyncError) as refused:
        client.execute("CREATE VIEW lake.v AS SELECT * FROM no_such_table")
    client.close()
    assert "no_such_table" in str(refused.value) and server.url in str(refused.value)
    assert ADMIN_PASSWORD not in str(refused.value)
    wrong = server_sync.ClickHouseHttp(server.url, ADMIN, "wrong-password")
    with pytest.raises(server_sync.ViewSyncError, match="Authentication failed") as refused:
        wrong.execute("SELECT 1")
    wrong.close()
    assert "wrong-password" not in str(refused.value)


def test_watch_applies_when_the_views_change_and_retries_a_server_not_up(
    local_settings: Settings, server: ChdbHttpServer, session: Session
) -> None:
    """The first render finds no server (connection refused) and is retried; later renders
    apply only when the SQL changed (a table appeared)."""
    views = lake_views(local_settings, target="server")
    renders = iter(
        [
            render_views_sql(views[:1], target="server"),  # server not up yet
            render_views_sql(views[:1], target="server"),
            render_views_sql(views[:1], target="server"),  # unchanged: not applied again
            render_views_sql(views, target="server"),
        ]
    )
    stop = threading.Event()
    applied: list[server_sync.SyncResult] = []

    def on_applied(result: server_sync.SyncResult) -> None:
        applied.append(result)
        if len(applied) == 2:
            stop.set()

    down = server_sync.ClickHouseHttp("http://127.0.0.1:9", ADMIN, ADMIN_PASSWORD)
    up = server_sync.ClickHouseHttp(server.url, ADMIN, ADMIN_PASSWORD)
    clients = iter([down, up, up, up])

    class Switching:
        """The server is down for the first attempt only."""

        def execute(self, statement: str) -> str:
            return self.current.execute(statement)

        def names(self, database: str) -> set[str]:
            return self.current.names(database)

    switching = Switching()

    def render() -> str:
        switching.current = next(clients)
        return next(renders)

    server_sync.watch(
        render,
        switching,  # type: ignore[arg-type]
        interval_s=0.01,
        stop=stop,
        on_applied=on_applied,
    )
    down.close()
    up.close()
    assert [r.views for r in applied] == [1, len(views)]
    creates = [s for s in server.statements if s.startswith("CREATE OR REPLACE VIEW")]
    assert len(creates) == 1 + len(views)


def test_the_cli_applies_the_views_of_the_settings(
    local_settings: Settings,
    server: ChdbHttpServer,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`binlake sql-apply-views` renders the views of the settings in the environment and
    applies them; without a password, or with the server down, it says so and fails."""
    for name in list(os.environ):
        if name.startswith(("BINLAKE_", "CLICKHOUSE_")):
            monkeypatch.delenv(name)
    for key, value in local_settings.env().items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    no_password = runner.invoke(cli_app, ["sql-apply-views", "--url", server.url])
    assert no_password.exit_code == 2 and "CLICKHOUSE_PASSWORD" in no_password.output
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", ADMIN_PASSWORD)
    down = runner.invoke(cli_app, ["sql-apply-views", "--url", "http://127.0.0.1:9"])
    assert down.exit_code == 1 and "views not applied at http://127.0.0.1:9" in down.output
    applied = runner.invoke(cli_app, ["sql-apply-views", "--url", server.url, "--user", ADMIN])
    assert applied.exit_code == 0, applied.output
    assert "4 view(s) over 3 Delta table(s)" in applied.output
    assert ADMIN_PASSWORD not in applied.output + down.output
    names = session.query("SELECT name FROM system.tables WHERE database = 'lake'", "TSVRaw")
    assert sorted(names.bytes().decode().split()) == [
        "freshness",
        "gold__orders_by_hour_status",
        "shop__orders",
        "shop__orders__provenance",
    ]


def test_watch_applies_again_when_a_refresh_is_due(
    local_settings: Settings, server: ChdbHttpServer
) -> None:
    """With refresh_s, unchanged views are applied again (a DeltaLake table learns new columns
    only when created again); refresh_s=0 makes every round due."""
    sql = render_views_sql(lake_views(local_settings, target="server"), target="server")
    stop = threading.Event()
    applied: list[server_sync.SyncResult] = []

    def on_applied(result: server_sync.SyncResult) -> None:
        applied.append(result)
        if len(applied) == 3:
            stop.set()

    client = server_sync.ClickHouseHttp(server.url, ADMIN, ADMIN_PASSWORD)
    server_sync.watch(
        lambda: sql, client, interval_s=0.01, refresh_s=0, stop=stop, on_applied=on_applied
    )
    client.close()
    assert [r.views for r in applied] == [4, 4, 4]

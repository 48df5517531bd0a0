"""Keeps a ClickHouse server's `lake` views equal to binlake's generated SQL, over ClickHouse's
HTTP interface.

The generated views read Delta tables with table functions (`deltaLake(binlake_lake, url=...)`).
A `readonly = 1` user may not run a table function, not even through a `SQL SECURITY DEFINER`
view (measured with chDB 26.9: "Cannot execute query in readonly mode"), so on a server each
table function call becomes a DeltaLake *table* in the `lake_source` database, which the view
reads instead: the dashboard user reads the view with no grant on `lake_source`, on S3 or on the
named collection, and still sees each new Delta commit on its next query.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from binlake.errors import BinlakeError

log = logging.getLogger(__name__)

LAKE_DATABASE = "lake"
SOURCE_DATABASE = "lake_source"
# Table function -> the table engine reading the same Delta table with the same arguments.
ENGINES = {"deltalake": "DeltaLake", "deltalakelocal": "DeltaLakeLocal"}
_STRING = r"'(?:[^'\\]|\\.)*'"
_TABLE_FUNCTION = re.compile(
    rf"\b(deltaLake|deltaLakeLocal)\s*\(((?:[^()']|{_STRING})*)\)", re.IGNORECASE
)
_CREATE_VIEW = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?P<name>(?:`[^`]+`|\w+)\.(?:`[^`]+`|\w+)|`[^`]+`|\w+)",
    re.IGNORECASE,
)
# The views run with their definer's rights (by default the admin applying them), never the
# reader's.
CURRENT_USER = "CURRENT_USER"


def definer_clause(definer: str = CURRENT_USER) -> str:
    return f"DEFINER = {definer} SQL SECURITY DEFINER"


class ViewSyncError(BinlakeError):
    """The ClickHouse server refused a statement, or answered something unexpected."""


def split_statements(sql: str) -> list[str]:
    """The statements of a script, split at `;` outside quotes and comments."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char in "'`\"":
            end = i + 1
            while end < n and sql[end] != char:
                end += 2 if sql[end] == "\\" else 1
            current.append(sql[i : end + 1])
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif char == ";":
            statements.append("".join(current).strip())
            current = []
            i += 1
        else:
            current.append(char)
            i += 1
    statements.append("".join(current).strip())
    return [s for s in statements if s]


def source_table_name(engine: str, arguments: str) -> str:
    """A stable name for the table reading one Delta table: the same call, the same name."""
    digest = hashlib.sha256(f"{engine}({arguments})".encode()).hexdigest()[:16]
    return f"delta_{digest}"


@dataclass(frozen=True)
class ServerPlan:
    """What the server should hold: source tables (name -> CREATE statement), then the views
    (name -> CREATE statement), in the order to run them."""

    setup: list[str]
    sources: dict[str, str]
    views: dict[str, str]

    def statements(self) -> list[str]:
        return [*self.setup, *self.sources.values(), *self.views.values()]


def plan_server_views(views_sql: str, *, definer: str = CURRENT_USER) -> ServerPlan:
    """The statements that give a server binlake's views: `views_sql` (render_views_sql's
    output for target "server") with every table function call read through a DeltaLake table
    in `lake_source`, and every view made `SQL SECURITY DEFINER` with `definer`."""
    setup = [f"CREATE DATABASE IF NOT EXISTS {SOURCE_DATABASE}"]
    sources: dict[str, str] = {}
    views: dict[str, str] = {}

    def to_table(match: re.Match[str]) -> str:
        engine = ENGINES[match.group(1).lower()]
        arguments = match.group(2).strip()
        name = source_table_name(engine, arguments)
        sources[name] = (
            f"CREATE OR REPLACE TABLE {SOURCE_DATABASE}.{name} ENGINE = {engine}({arguments})"
        )
        return f"{SOURCE_DATABASE}.{name}"

    for statement in split_statements(views_sql):
        view = _CREATE_VIEW.match(statement)
        if view is None:
            if _TABLE_FUNCTION.search(statement):
                raise ViewSyncError(f"a table function outside a view: {statement[:200]}")
            setup.append(statement)
            continue
        body = _TABLE_FUNCTION.sub(to_table, statement)
        if not re.search(r"\bSQL\s+SECURITY\b", body, re.IGNORECASE):
            end = view.end("name")
            body = f"{body[:end]} {definer_clause(definer)}{body[end:]}"
        views[_unquoted(view.group("name")).split(".")[-1]] = body
    return ServerPlan(setup=setup, sources=sources, views=views)


def _unquoted(name: str) -> str:
    return name.replace("`", "")


class ClickHouseHttp:
    """Statements over ClickHouse's HTTP interface, one per request, as the user given."""

    def __init__(self, url: str, user: str, password: str, *, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        # Headers, not the URL: a password in a query string ends up in access logs.
        self._client = httpx.Client(
            base_url=self.url,
            headers={"X-ClickHouse-User": user, "X-ClickHouse-Key": password},
            timeout=timeout_s,
        )

    def execute(self, statement: str) -> str:
        response = self._client.post("/", content=statement.encode())
        if response.status_code != 200:
            reason = response.text.strip().splitlines()[:1] or [f"HTTP {response.status_code}"]
            raise ViewSyncError(
                f"ClickHouse at {self.url} refused {statement[:160]!r}: {reason[0][:500]}"
            )
        return response.text

    def names(self, database: str) -> set[str]:
        listed = self.execute(
            f"SELECT name FROM system.tables WHERE database = '{database}' FORMAT TSVRaw"
        )
        return set(listed.split())

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class SyncResult:
    views: int
    sources: int
    dropped: list[str]


def apply_plan(client: ClickHouseHttp, plan: ServerPlan) -> SyncResult:
    """Runs the plan, then drops views and source tables the plan no longer has (a table
    removed from the settings), views first so none is left reading a dropped table."""
    for statement in plan.statements():
        client.execute(statement)
    dropped = []
    for database, keep in ((LAKE_DATABASE, plan.views), (SOURCE_DATABASE, plan.sources)):
        for name in sorted(client.names(database) - set(keep)):
            client.execute(f"DROP TABLE IF EXISTS {database}.`{name}`")
            dropped.append(f"{database}.{name}")
    return SyncResult(views=len(plan.views), sources=len(plan.sources), dropped=dropped)


def watch(
    render: Callable[[], str],
    client: ClickHouseHttp,
    *,
    interval_s: float,
    stop: threading.Event,
    refresh_s: float | None = None,
    on_applied: Callable[[SyncResult], None] = lambda _: None,
) -> None:
    """Renders the views every `interval_s` and applies them when they changed (a new table
    appeared), when the last attempt failed (the server was not up yet, the lake unreachable),
    and, with `refresh_s`, that long after the last apply even if unchanged: a DeltaLake table
    keeps the columns it was created with, so a column added to a Delta table shows once its
    table is created again. Until `stop` is set."""
    applied_sql: str | None = None
    applied_at = 0.0
    while not stop.is_set():
        try:
            sql = render()
            stale = refresh_s is not None and time.monotonic() - applied_at >= refresh_s
            if sql != applied_sql or stale:
                on_applied(apply_plan(client, plan_server_views(sql)))
                applied_sql, applied_at = sql, time.monotonic()
        except (httpx.TransportError, BinlakeError, OSError) as exc:
            log.warning("views not applied, retrying in %.0f s: %s", interval_s, exc)
        stop.wait(interval_s)

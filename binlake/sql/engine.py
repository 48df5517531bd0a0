"""chDB holding the lake's views: the embedded ClickHouse `binlake sql` and the SQL endpoint run
queries on.

Two connections to one in-process engine: the owner's creates the views, the reader's runs the
checked queries with DDL off (`allow_ddl=0`, `readonly=2`; `readonly=1` would refuse the views'
own `deltaLakeLocal`). The views follow the lake: `sync_views` is cheap (one existence check per
Delta log) and runs at most every `refresh_seconds` before a query, and again when a query names
a table not there yet.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import chdb

from binlake.settings import Settings
from binlake.sql.guard import QueryGuard
from binlake.sql.views import DATABASE, lake_views, named_collection_sql
from binlake.storage import LakeStorage

# A query running longer is stopped (`SELECT * FROM numbers()` would never end).
QUERY_TIMEOUT_SECONDS = 300
UNKNOWN_TABLE = 60
UNKNOWN_DATABASE = 81
# Databases a query may run in (`database`); the others are refused.
CURRENT_DATABASES = ("lake", "default", "system", "information_schema", "INFORMATION_SCHEMA")
_CODE = re.compile(r"Code: (\d+)\.")
_FORMAT_CLAUSE = re.compile(r"\sFORMAT\s+(\w+)$")


class QueryFailed(Exception):
    """ClickHouse refused or failed a query; `code` is its exception code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class QueryResult:
    data: bytes
    format: str
    rows_read: int
    bytes_read: int
    elapsed_seconds: float


def error_code(message: str) -> int:
    """The `Code: N.` of a ClickHouse error message (0 when it names none)."""
    match = _CODE.search(message)
    return int(match.group(1)) if match else 0


@contextlib.contextmanager
def _working_directory(path: str | None) -> Iterator[None]:
    """chDB (chdb-core 26.9) lets `deltaLakeLocal` read only under its user files path, which
    is the working directory of the moment (`.`) and cannot be set on the connection: queries
    run from the lake's root."""
    if path is None:
        yield
        return
    before = os.getcwd()
    while not os.path.isdir(path):  # a lake not written yet: its nearest existing parent
        path = os.path.dirname(path)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


class LakeEngine:
    """The lake's views in chDB, and queries over them that the guard let through."""

    def __init__(self, settings: Settings, refresh_seconds: float | None = None) -> None:
        self.settings = settings
        self.refresh_seconds = (
            settings.sql.refresh_seconds if refresh_seconds is None else refresh_seconds
        )
        storage = LakeStorage.from_settings(settings)
        self._lock = threading.Lock()
        self._lake_root = storage.base if storage.is_local else None
        self._owner = chdb.connect(":memory:")
        self._reader = chdb.connect(
            f":memory:?allow_ddl=0&readonly=2&max_execution_time={QUERY_TIMEOUT_SECONDS}"
        )
        self._reader_database = "default"
        if not storage.is_local:
            self._owner.query(named_collection_sql(settings))
        self._owner.query(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        self._created: dict[str, str] = {}
        self._synced_at = 0.0
        self.guard = QueryGuard(self._reader)
        self.sync_views()

    @property
    def version(self) -> str:
        """The ClickHouse engine's version (26.9.2.1 in chdb-core 26.9.0)."""
        return str(chdb.engine_version)

    @property
    def views(self) -> list[str]:
        """Names of the views created so far."""
        return sorted(self._created)

    def sync_views(self) -> list[str]:
        """Create the views whose Delta table appeared (or whose definition changed) since the
        last call; returns their names."""
        views = lake_views(self.settings, target="embedded", existing_only=True)
        created = []
        with self._lock, _working_directory(self._lake_root):
            for view in views:
                sql = view.create_sql()
                if self._created.get(view.name) != sql:
                    self._owner.query(sql)
                    self._created[view.name] = sql
                    created.append(view.name)
            self._synced_at = time.monotonic()
        return created

    def query(
        self,
        sql: str,
        *,
        output_format: str = "TabSeparated",
        params: Mapping[str, str] | None = None,
        database: str = DATABASE,
    ) -> QueryResult:
        """Run `sql` if the guard allows it (RefusedQuery if not; QueryFailed when ClickHouse
        fails it), in `database`, answering in its FORMAT clause's format or `output_format`."""
        if database not in CURRENT_DATABASES:
            raise QueryFailed(
                f"Code: {UNKNOWN_DATABASE}. DB::Exception: Database {database} does not exist "
                f"here; use one of {', '.join(CURRENT_DATABASES)}. (UNKNOWN_DATABASE)",
                UNKNOWN_DATABASE,
            )
        if time.monotonic() - self._synced_at >= self.refresh_seconds:
            self.sync_views()
        try:
            return self._run(sql, output_format, params, database)
        except QueryFailed as failed:
            if failed.code != UNKNOWN_TABLE or not self.sync_views():
                raise
        return self._run(sql, output_format, params, database)

    def _run(
        self, sql: str, output_format: str, params: Mapping[str, str] | None, database: str
    ) -> QueryResult:
        with self._lock, _working_directory(self._lake_root):
            try:
                if database != self._reader_database:
                    self._reader.query(f"USE {database}")
                    self._reader_database = database
                checked = self.guard.check(sql, params, database)
                named = _FORMAT_CLAUSE.search(checked.sql)
                fmt = named.group(1) if named else output_format
                result = self._reader.query(checked.sql, fmt, params=dict(params or {}))
            except chdb.ChdbError as exc:
                message = str(exc)
                raise QueryFailed(message, error_code(message)) from exc
        return QueryResult(
            data=result.bytes(),
            format=fmt,
            rows_read=result.rows_read(),
            bytes_read=result.bytes_read(),
            elapsed_seconds=result.elapsed(),
        )

    def close(self) -> None:
        with self._lock:
            self._reader.close()
            self._owner.close()

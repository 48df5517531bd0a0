"""Connections to the MySQL source and the read-only queries the lake asks of it.

`connect_source` and `count_rows` serve the demo and status; `SourceDatabase` serves
reconciliation and freshness (row counts, column types, last commit time, any query).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pymysql

from binlake.errors import ConfigurationError, RetriableError
from binlake.settings import Settings

_IDENTIFIER = re.compile(r"^[A-Za-z0-9_$]+$")
_UNKNOWN_SYSTEM_VARIABLE = 1193  # MySQL error ER_UNKNOWN_SYSTEM_VARIABLE


def connect_source(
    settings: Settings, *, admin: bool = False, database: str | None = None
) -> pymysql.Connection:
    """A connection to the source as its settings say (`admin`: as the admin user)."""
    return SourceDatabase.from_settings(settings, admin=admin, connect_timeout_seconds=5).open(
        database
    )


def count_rows(settings: Settings, table: str) -> int | None:
    """Rows in `<db>.<table>` at the source, or None if the table does not exist yet."""
    db, name = table.split(".")
    with connect_source(settings) as conn, conn.cursor() as cur:
        try:
            cur.execute(f"SELECT COUNT(*) FROM `{db}`.`{name}`")
        except pymysql.err.ProgrammingError:
            return None
        return int(cur.fetchone()[0])


def split_table(table: str) -> tuple[str, str]:
    """(db, table) of `<db>.<table>`, refused unless both are plain identifiers (they are
    spliced into SQL)."""
    parts = table.split(".")
    if len(parts) != 2 or not all(_IDENTIFIER.match(p) for p in parts):
        raise ConfigurationError(f"table {table!r} must be <db>.<table> with plain identifiers")
    return parts[0], parts[1]


@dataclass(frozen=True)
class SourceDatabase:
    """The source database, read only; every failure to reach it is a `RetriableError`."""

    host: str
    port: int
    user: str
    password: str
    connect_timeout_seconds: int = 10

    @classmethod
    def from_settings(
        cls, settings: Settings, *, admin: bool = False, connect_timeout_seconds: int = 10
    ) -> SourceDatabase:
        mysql = settings.mysql
        user, password = (
            (mysql.admin_user, mysql.admin_password) if admin else (mysql.user, mysql.password)
        )
        return cls(
            mysql.host, mysql.port, user, password.get_secret_value(), connect_timeout_seconds
        )

    def open(self, database: str | None = None) -> pymysql.connections.Connection:
        """A connection in autocommit mode; pymysql's own errors pass through."""
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            autocommit=True,
            connect_timeout=self.connect_timeout_seconds,
        )

    def connect(self) -> pymysql.connections.Connection:
        """A connection in autocommit mode; failing to connect is a `RetriableError`."""
        try:
            return self.open()
        except pymysql.err.OperationalError as exc:
            raise RetriableError(
                f"cannot connect to MySQL at {self.host}:{self.port}: {exc}"
            ) from exc

    def query(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        """Rows of `sql` (with pymysql `%s` parameters in `args`) as tuples."""
        return self.query_with_session([], sql, args)

    def query_with_session(
        self, session: list[str], sql: str, args: Any = None
    ) -> list[tuple[Any, ...]]:
        """Rows of `sql` after the `session` statements (e.g. ``SET SESSION ...``) on the same
        connection."""
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                for statement in session:
                    cursor.execute(statement)
                cursor.execute(sql, args)
                return list(cursor.fetchall())
        except pymysql.err.OperationalError as exc:
            raise RetriableError(f"MySQL query failed: {exc}") from exc
        finally:
            connection.close()

    def count_rows(self, table: str) -> int:
        """`SELECT COUNT(*)` of `<db>.<table>`."""
        db, name = split_table(table)
        rows = self.query(f"SELECT COUNT(*) FROM `{db}`.`{name}`")
        return int(rows[0][0])

    def column_types(self, table: str) -> list[tuple[str, str, int | None]]:
        """(name, DATA_TYPE, DATETIME_PRECISION) of each column of `<db>.<table>`, in order."""
        db, name = split_table(table)
        rows = self.query(
            "SELECT COLUMN_NAME, DATA_TYPE, DATETIME_PRECISION FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (db, name),
        )
        return [(str(n), str(t), None if p is None else int(p)) for n, t, p in rows]

    def last_commit_time(self, table: str) -> datetime | None:
        """When `<db>.<table>` last changed (InnoDB UPDATE_TIME, 1 s resolution), in UTC.

        None when the server does not know: UPDATE_TIME is NULL after a restart (or once the
        table left InnoDB's cache) until the next write. MySQL 8 caches it for
        `information_schema_stats_expiry` (24 h) unless the session sets 0, done here;
        MariaDB and MySQL 5.7 have no such cache (and no such variable). UNIX_TIMESTAMP reads
        the value in the session's time zone, so the result does not depend on it.
        """
        db, name = split_table(table)
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                try:
                    cursor.execute("SET SESSION information_schema_stats_expiry = 0")
                except pymysql.err.OperationalError as exc:
                    if exc.args[0] != _UNKNOWN_SYSTEM_VARIABLE:
                        raise
                    # MariaDB, MySQL 5.7: no such variable, nothing cached
                cursor.execute(
                    "SELECT UNIX_TIMESTAMP(UPDATE_TIME) FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                    (db, name),
                )
                row = cursor.fetchone()
        except pymysql.err.OperationalError as exc:
            raise RetriableError(f"MySQL query failed: {exc}") from exc
        finally:
            connection.close()
        if row is None or row[0] is None:
            return None
        return datetime.fromtimestamp(float(row[0]), tz=UTC)

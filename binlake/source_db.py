"""Connections to the MySQL source, for the demo, status and reconciliation."""

from __future__ import annotations

import pymysql

from binlake.settings import Settings


def connect_source(
    settings: Settings, *, admin: bool = False, database: str | None = None
) -> pymysql.Connection:
    mysql = settings.mysql
    user, password = (
        (mysql.admin_user, mysql.admin_password) if admin else (mysql.user, mysql.password)
    )
    return pymysql.connect(
        host=mysql.host,
        port=mysql.port,
        user=user,
        password=password.get_secret_value(),
        database=database,
        autocommit=True,
        connect_timeout=5,
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

"""Every MySQL column type Debezium emits, a table without a primary key and one with a
composite key, from real MariaDB through Debezium, bronze and Dagster's silver (Delta, MERGE),
and the reconciliation digest computed by the real server against silver's.

Runs its own stack (the session stack's tables are shared with other tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from binlake.demo import lake_checks
from binlake.local_stack.stack import LocalStack
from binlake.silver.pii import PiiPolicy
from binlake.silver.reconcile import compared_columns, judge, silver_digest
from binlake.silver.reconcile_check import differing_columns
from binlake.source_db import connect_source
from dagster_defs.resources import build_mysql_source
from tests.support.stack import stack_of_tables, wait_for

pytestmark = pytest.mark.integration

ALL_TYPES = "shop.all_types"
NO_PK = "shop.no_pk"
PAIRS = "shop.pairs"

ALL_TYPES_DDL = """
CREATE TABLE all_types (
    id BIGINT PRIMARY KEY,
    t_tiny TINYINT, t_bool TINYINT(1), t_small SMALLINT, t_medium MEDIUMINT, t_int INT,
    t_big BIGINT, t_ubig BIGINT UNSIGNED, t_year YEAR,
    t_float FLOAT, t_double DOUBLE,
    t_dec DECIMAL(10,2), t_dec_max DECIMAL(65,30),
    t_date DATE, t_dt DATETIME, t_dt6 DATETIME(6), t_ts TIMESTAMP(3) NULL, t_time TIME(6),
    t_bit BIT(8), t_enum ENUM('red','green','blue'), t_set SET('a','b','c'),
    t_json JSON, t_blob BLOB, t_bin BINARY(4), t_varbin VARBINARY(16),
    t_char CHAR(3), t_text TEXT, t_utf8 VARCHAR(50),
    contact_email VARCHAR(100)
) DEFAULT CHARSET=utf8mb4
"""
ROWS = [
    (
        1,
        -128,
        1,
        -32768,
        -8388608,
        -2147483648,
        -(2**63),
        2**64 - 1,
        1901,
        1.5,
        2.25,
        Decimal("-12345678.91"),
        Decimal("12345678901234567890123456789012345.123456789012345678901234567890"),
        date(1000, 1, 1),
        datetime(2026, 11, 21, 10, 0, 1),
        datetime(2026, 11, 21, 10, 0, 1, 123456),
        datetime(2026, 11, 21, 10, 0, 1, 999000),
        timedelta(hours=-838, minutes=-59, seconds=-59),
        b"\xa5",
        "red",
        "a,c",
        '{"k": [1, 2, {"n": null}]}',
        b"\x00\x01binary\xff",
        b"\x01\x02\x03\x04",
        b"\xde\xad",
        "abc",
        "line1\nline2 \t tab",
        "zażółć 🦆 日本",
        "ada@example.com",
    ),
    (
        2,
        127,
        0,
        32767,
        8388607,
        2147483647,
        2**63 - 1,
        0,
        2155,
        -0.0,
        1e300,
        Decimal("0.01"),
        Decimal("-0.000000000000000000000000000001"),
        date(9999, 12, 31),
        datetime(1970, 1, 1),
        datetime(2038, 1, 19, 3, 14, 7, 1),
        datetime(2001, 2, 3, 4, 5, 6),
        timedelta(hours=838, minutes=59, seconds=59),
        b"\x00",
        "blue",
        "",
        "[]",
        b"",
        b"\x00\x00\x00\x00",
        b"",
        "",
        "",
        "",
        None,
    ),
    (3,) + (None,) * 28,
]


@pytest.fixture(scope="module")
def types_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    yield from stack_of_tables(tmp_path_factory, "types-stack", [ALL_TYPES, NO_PK, PAIRS])


def test_every_type_reaches_silver_and_reconciles(types_stack: LocalStack) -> None:
    settings = types_stack.settings
    with connect_source(settings, admin=True, database="shop") as conn, conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(ALL_TYPES_DDL)
        cur.execute("CREATE TABLE no_pk (kind VARCHAR(10), amount INT)")
        cur.execute("CREATE TABLE pairs (a INT, b VARCHAR(10), v INT, PRIMARY KEY (a, b))")
        placeholders = ", ".join(["%s"] * len(ROWS[0]))
        cur.executemany(f"INSERT INTO all_types VALUES ({placeholders})", ROWS)
        cur.execute("UPDATE all_types SET t_utf8 = 'ünïcode ✓', t_dec = 1.10 WHERE id = 2")
        cur.execute("INSERT INTO all_types (id, t_int) VALUES (4, 4)")
        cur.execute("DELETE FROM all_types WHERE id = 4")
        cur.execute("INSERT INTO no_pk VALUES ('a', 1), ('a', 1), ('b', 2), ('c', 3)")
        cur.execute("DELETE FROM no_pk WHERE kind = 'b'")
        cur.execute("INSERT INTO pairs VALUES (1, 'x', 10), (1, 'y', 11), (2, 'x', 20)")
        cur.execute("UPDATE pairs SET v = 12 WHERE a = 1 AND b = 'y'")
        cur.execute("DELETE FROM pairs WHERE a = 2 AND b = 'x'")
        source = lake_checks.source_table(settings, ALL_TYPES)

    # silver, by Dagster's own automation in the stack, equals the source, masked as it masks
    for table in (ALL_TYPES, PAIRS):
        wait_for(f"silver {table} equals the source", lambda t=table: _equal(settings, t))
    assert lake_checks.silver_equals_source(settings, PAIRS)
    # No primary key: rows are identified by all their values (identical rows collapse).
    wait_for(
        "silver no_pk",
        lambda: (
            sorted(lake_checks.silver_without_provenance(settings, NO_PK).rows())
            == [("a", 1), ("c", 3)]
        ),
    )

    silver = lake_checks.silver_without_provenance(settings, ALL_TYPES).sort("id")
    assert silver["id"].to_list() == [1, 2, 3]
    digest = PiiPolicy.from_settings(settings.silver).digest
    one = silver.row(0, named=True)
    assert one["contact_email"] == digest("ada@example.com")  # PII masked, consistently
    assert "ada@example.com" not in str(silver.rows())
    assert one["t_utf8"] == "zażółć 🦆 日本"
    assert one["t_dec_max"] == "12345678901234567890123456789012345.123456789012345678901234567890"
    assert one["t_ubig"] == Decimal(2**64 - 1)  # bigint.unsigned.handling.mode=precise
    assert one["t_dt6"] == datetime(2026, 11, 21, 10, 0, 1, 123456)
    assert one["t_ts"] == datetime(2026, 11, 21, 10, 0, 1, 999000, tzinfo=UTC)
    assert one["t_time"] == -(838 * 3600 + 59 * 60 + 59) * 1_000_000  # TIME as microseconds
    assert one["t_date"] == date(1000, 1, 1)
    assert one["t_bit"] == b"\xa5"
    assert (one["t_enum"], one["t_set"]) == ("red", "a,c")
    assert one["t_blob"] == b"\x00\x01binary\xff" and one["t_bin"] == b"\x01\x02\x03\x04"
    assert silver.row(2, named=True)["t_int"] is None
    assert source.height == 3

    # the reconciliation digest: the server's SQL and silver's polars agree on real data
    mysql = build_mysql_source(settings)
    for table in (ALL_TYPES, PAIRS, NO_PK):
        current = lake_checks.silver_without_provenance(settings, table)
        columns = mysql.column_types(table)
        masked = PiiPolicy.from_settings(settings.silver).masked_columns(
            table, [n for n, _, _ in columns]
        )
        compared, excluded = compared_columns(columns, current, masked)
        rows, source_digest = mysql.content_digest(table, compared)
        verdict = judge(
            source_rows=rows,
            silver_rows=current.height,
            source_digest=source_digest,
            lake_digest=silver_digest(current, compared),
            source_quiet=True,
            tolerance=0.0,
        )
        differing = differing_columns(mysql, table, current, compared)
        if table == NO_PK:
            # Identical keyless rows collapse in silver (a known limit, README): the
            # reconciliation says so rather than passing.
            assert (rows, current.height) == (3, 2)
            assert not verdict.passed and "counts differ by 1" in verdict.reason
            continue
        assert verdict.passed, (table, verdict, differing)
        if table == ALL_TYPES:
            # BIT too, as its unsigned number, now that silver holds MySQL's byte order
            assert {"t_dec_max", "t_dt6", "t_ts", "t_utf8", "t_bool", "t_year", "t_bit"} <= {
                c.name for c in compared
            }
            # (MariaDB's JSON is LONGTEXT: compared as text there, excluded on MySQL)
            assert {"t_float", "t_blob", "t_time", "contact_email"} <= set(excluded)
    # and a difference is caught: change one value at the source only
    with connect_source(settings, admin=True, database="shop") as conn, conn.cursor() as cur:
        cur.execute("SET sql_log_bin = 0")  # not captured: silver keeps the old value
        cur.execute("UPDATE pairs SET v = 99 WHERE a = 1 AND b = 'x'")
    current = lake_checks.silver_without_provenance(settings, PAIRS)
    compared, _ = compared_columns(mysql.column_types(PAIRS), current, [])
    rows, source_digest = mysql.content_digest(PAIRS, compared)
    assert rows == current.height and source_digest % 2**64 != silver_digest(current, compared)


def _equal(settings, table: str) -> bool:
    source = lake_checks.source_table(settings, table)
    silver = lake_checks.silver_without_provenance(settings, table)
    return source.height == silver.height and set(silver.columns) >= set(source.columns)

"""Nothing but silver and gold: each way out of the published views is refused, by name, and
leaves no trace; what BI clients need for metadata is allowed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from binlake.settings import Settings
from binlake.sql.engine import LakeEngine, QueryFailed
from binlake.sql.guard import READONLY, RefusedQuery, parse_ast
from tests.support.sql_endpoint import merge_silver, orders


@pytest.fixture
def engine(settings: Settings, bronze) -> Iterator[LakeEngine]:
    bronze.write("shop.orders", [bronze.change("c", 0, id=1, status="secret")])
    merge_silver(settings, "shop.orders", [orders(0, "c", 1, "new")])
    lake = LakeEngine(settings)
    yield lake
    lake.close()


def published(engine: LakeEngine) -> str:
    return engine.query("SHOW TABLES FROM lake").data.decode()


def bronze_glob(settings: Settings) -> str:
    return f"{settings.lake_url}/bronze/**/*.parquet"


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        ("SELECT * FROM file('{bronze}')", "table function file()"),
        ("SELECT count() FROM file('{bronze}', 'Parquet')", "table function file()"),
        ("SELECT file('{bronze}')", "table function file()"),
        ("SELECT * FROM deltaLakeLocal('{lake}/silver/shop/orders')", "deltaLakeLocal()"),
        ("SELECT * FROM deltaLakeLocal('{lake}/bronze')", "deltaLakeLocal()"),
        ("SELECT * FROM url('http://127.0.0.1:1/x', 'CSV')", "table function url()"),
        ("SELECT * FROM s3('http://127.0.0.1:1/b/k.parquet')", "table function s3()"),
        ("SELECT * FROM remote('127.0.0.1', system.one)", "table function remote()"),
        ("SELECT 1 IN (SELECT * FROM file('{bronze}'))", "table function file()"),
        ("DESCRIBE file('{bronze}')", "table function file()"),
        ("SELECT * FROM system.named_collections", "table system.named_collections"),
        ("SELECT 1 IN system.users", "table system.users"),
        ("SELECT * FROM lake.shop__orders SETTINGS max_threads = 1", "SETTINGS"),
        ("SET readonly = 0", "refused SET"),
        ("SET allow_ddl = 1", "refused SET"),
        ("CREATE VIEW lake.leak AS SELECT * FROM file('{bronze}')", "CREATE (DDL)"),
        ("DROP VIEW lake.shop__orders", "DROP (DDL)"),
        ("ALTER TABLE lake.shop__orders DELETE WHERE 1", "ALTER (DDL)"),
        ("INSERT INTO FUNCTION file('{out}', 'CSV') SELECT 1", "INSERT"),
        ("SYSTEM DROP DNS CACHE", "SYSTEM"),
        ("KILL QUERY WHERE 1", "KILL"),
        (
            "EXPLAIN PIPELINE INSERT INTO lake.shop__orders SELECT * FROM lake.shop__orders",
            "INSERT",
        ),
    ],
)
def test_refused_by_name_and_nothing_happens(engine, settings, tmp_path, sql, refused):
    out = tmp_path / "written.csv"
    text = sql.format(bronze=bronze_glob(settings), lake=settings.lake_url, out=out)
    before = published(engine)
    with pytest.raises(RefusedQuery) as raised:
        engine.query(text)
    assert refused in str(raised.value)
    assert raised.value.code == READONLY
    assert published(engine) == before
    assert not out.exists()
    assert int(engine.query("SELECT count() FROM lake.shop__orders").data) == 1


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 SETTINGS readonly = 0",
        "SELECT 1 SETTINGS allow_ddl = 1",
        # ClickHouse's parser refuses a second statement before anything runs
        "SELECT 1; DROP VIEW lake.shop__orders",
        "SELECT 1; SELECT * FROM file('/etc/passwd')",
    ],
)
def test_lifting_settings_and_smuggled_statements_fail_in_clickhouse(engine, sql):
    before = published(engine)
    with pytest.raises((RefusedQuery, QueryFailed)) as raised:
        engine.query(sql)
    # READONLY, SYNTAX_ERROR, QUERY_IS_PROHIBITED
    assert raised.value.code in (READONLY, 62, 392)
    assert published(engine) == before


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count() FROM lake.shop__orders",
        "SELECT count() FROM shop__orders",
        "WITH live AS (SELECT * FROM lake.shop__orders) SELECT count() FROM live",
        "SELECT count() FROM numbers(10)",
        "SELECT name FROM system.tables WHERE database = 'lake'",
        "SELECT name, type FROM system.columns WHERE table = 'shop__orders'",
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'lake'",
        "SELECT version(), timezone()",
        "SHOW TABLES FROM lake",
        "SHOW DATABASES",
        "DESCRIBE TABLE lake.shop__orders",
        "EXISTS TABLE lake.shop__orders",
        "SELECT format('{} rows', count()) FROM lake.shop__orders",
        "SELECT * FROM lake.shop__orders FORMAT JSONEachRow",
    ],
)
def test_reads_and_metadata_are_allowed(engine, sql):
    assert engine.query(sql).data


def test_a_query_naming_a_database_outside_is_refused(engine):
    with pytest.raises(QueryFailed, match="UNKNOWN_DATABASE"):
        engine.query("SELECT 1", database="bronze")
    with pytest.raises(RefusedQuery, match=r"system\.users"):
        engine.query("SELECT * FROM users", database="system")


def test_ast_lines_become_a_tree():
    nodes = parse_ast(
        "SelectWithUnionQuery (children 1)\n"
        " ExpressionList (children 1)\n"
        "  TableExpression (children 1)\n"
        "   Function file (children 1)\n"
        "  TableIdentifier lake.x (alias y)\n"
    )
    assert [(n.kind, n.rest, n.parent.kind if n.parent else None) for n in nodes] == [
        ("SelectWithUnionQuery", "", None),
        ("ExpressionList", "", "SelectWithUnionQuery"),
        ("TableExpression", "", "ExpressionList"),
        ("Function", "file", "TableExpression"),
        ("TableIdentifier", "lake.x (alias y)", "ExpressionList"),
    ]


def test_bronze_is_really_there_to_refuse(engine, settings):
    # the refusals above are not vacuous: the bronze file they aim at exists
    assert list(Path(settings.lake_url, "bronze").rglob("*.parquet"))

"""The SQL endpoint as a process, with real clients: curl, clickhouse-connect and the
`clickhousedb` SQLAlchemy dialect Superset uses; and its refusals over HTTP, each leaving
nothing behind."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import clickhouse_connect
import httpx
import polars as pl
import pytest
import sqlalchemy as sa

from binlake.silver.delta_table import CURRENT_PROVENANCE
from binlake.silver.tables import SilverTables
from binlake.storage import LakeStorage
from tests.support.lake import change
from tests.support.processes import wait_for
from tests.support.sql_endpoint import merge_silver, orders


@pytest.fixture
def lake_orders(settings):
    """shop.orders after three merges: ids 1..5, 2 deleted, 1 updated to paid."""
    merge_silver(settings, "shop.orders", [orders(i, "c", i + 1, "new") for i in range(5)])
    merge_silver(settings, "shop.orders", [orders(5, "u", 1, "paid"), orders(6, "d", 2, "new")])
    return SilverTables.of(LakeStorage.from_settings(settings)).table("shop.orders")


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--include", *args], capture_output=True, text=True, timeout=60, check=False
    )


def status_and_body(answer: subprocess.CompletedProcess[str]) -> tuple[int, str]:
    # text mode reads "\r\n" as "\n"
    head, _, body = answer.stdout.partition("\n\n")
    return int(head.split()[1]), body


def test_curl_ping_get_post_format_and_parameters(lake_orders, sql_endpoint):
    url, auth = sql_endpoint.url, f"{sql_endpoint.user}:{sql_endpoint.password}"
    assert status_and_body(curl(f"{url}ping")) == (200, "Ok.\n")
    assert status_and_body(curl(url)) == (200, "Ok.\n")

    status, body = status_and_body(
        curl(
            "-u", auth, "--data-binary", "SELECT id, status FROM lake.shop__orders ORDER BY id", url
        )
    )
    assert status == 200
    assert body == "1\tpaid\n3\tnew\n4\tnew\n5\tnew\n"

    status, body = status_and_body(
        curl("-u", auth, "-G", "--data-urlencode", "query=SELECT count() FROM shop__orders", url)
    )
    assert (status, body) == (200, "4\n")

    answer = curl(
        "-u",
        auth,
        "--data-binary",
        "SELECT id FROM shop__orders WHERE status = {s:String} ORDER BY id FORMAT JSONEachRow",
        f"{url}?param_s=new",
    )
    status, body = status_and_body(answer)
    assert status == 200
    assert [json.loads(line) for line in body.splitlines()] == [{"id": 3}, {"id": 4}, {"id": 5}]
    assert "X-ClickHouse-Format: JSONEachRow" in answer.stdout
    assert "X-ClickHouse-Summary:" in answer.stdout

    status, body = status_and_body(
        curl("-u", auth, "--data-binary", "SELECT 1", f"{url}?default_format=CSVWithNames")
    )
    assert (status, body) == (200, '"1"\n1\n')


def test_clickhouse_connect_query_and_parameters(settings, lake_orders, sql_endpoint):
    client = clickhouse_connect.get_client(
        host="127.0.0.1",
        port=sql_endpoint.port,
        username=sql_endpoint.user,
        password=sql_endpoint.password,
        database="lake",
    )
    served = pl.DataFrame(
        client.query("SELECT * FROM shop__orders ORDER BY id").named_results(),
        infer_schema_length=None,
    )
    expected = lake_orders.read_current().drop(*CURRENT_PROVENANCE).sort("id")
    assert served.columns == expected.columns
    assert served.to_dicts() == expected.to_dicts()
    answer = client.query(
        "SELECT id FROM lake.shop__orders WHERE status = {c:String} ORDER BY id",
        parameters={"c": "paid"},
    )
    assert answer.result_rows == [(1,)]

    # a new commit is seen by the next query, a new table within the refresh interval
    merge_silver(settings, "shop.orders", [orders(7, "d", 1, "paid")])
    assert client.command("SELECT count() FROM lake.shop__orders") == 3
    merge_silver(settings, "shop.customers", [_customer(0, 1, "ann")])
    wait_for(
        lambda: "shop__customers" in client.command("SHOW TABLES FROM lake"),
        timeout=60,
        what="shop__customers published",
        logs=sql_endpoint.log,
    )
    assert client.query("SELECT id, name FROM lake.shop__customers").result_rows == [(1, "ann")]


def _customer(offset: int, customer_id: int, name: str) -> dict:
    return change("c", offset, id=customer_id, name=name, email=f"{name}@example.com")


def test_sqlalchemy_clickhousedb_lists_tables_and_columns(lake_orders, sql_endpoint):
    engine = sa.create_engine(
        f"clickhousedb://{sql_endpoint.user}:{sql_endpoint.password}@127.0.0.1:"
        f"{sql_endpoint.port}/lake"
    )
    inspector = sa.inspect(engine)
    assert inspector.get_table_names(schema="lake") == ["shop__orders", "shop__orders__provenance"]
    columns = [c["name"] for c in inspector.get_columns("shop__orders", schema="lake")]
    assert columns == lake_orders.read_current().drop(*CURRENT_PROVENANCE).columns
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT status, count() AS n FROM lake.shop__orders GROUP BY status ORDER BY status"
            )
        ).all()
    assert [tuple(r) for r in rows] == [("new", 3), ("paid", 1)]


def _refused(answer: httpx.Response, status: int, code: int, words: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["X-ClickHouse-Exception-Code"] == str(code)
    assert answer.text.startswith(f"Code: {code}. DB::Exception:")
    assert words in answer.text


def test_wrong_or_missing_password_is_refused(lake_orders, sql_endpoint):
    sql = "SELECT count() FROM lake.shop__orders"
    url = sql_endpoint.url
    _refused(
        httpx.post(url, content=sql, auth=(sql_endpoint.user, "wrong")),
        401,
        516,
        "Authentication failed",
    )
    _refused(httpx.post(url, content=sql), 401, 516, "Authentication failed")
    _refused(
        httpx.post(url, content=sql, params={"user": sql_endpoint.user}),
        401,
        516,
        "Authentication failed",
    )
    headers = {"X-ClickHouse-User": sql_endpoint.user, "X-ClickHouse-Key": sql_endpoint.password}
    assert httpx.post(url, content=sql, headers=headers).text == "4\n"
    params = {"user": sql_endpoint.user, "password": sql_endpoint.password}
    assert httpx.post(url, content=sql, params=params).text == "4\n"


def test_refusals_over_http_leave_nothing_behind(
    settings, bronze, lake_orders, sql_endpoint, tmp_path
):
    bronze.write("shop.orders", [bronze.change("c", 0, id=1, status="secret")])
    bronze_files = f"{settings.lake_url}/bronze/**/*.parquet"
    out = tmp_path / "leak.csv"
    before = sql_endpoint.post("SHOW TABLES FROM lake").text
    for sql, words in [
        (f"SELECT * FROM file('{bronze_files}')", "table function file()"),
        (f"SELECT * FROM deltaLakeLocal('{settings.lake_url}/bronze')", "deltaLakeLocal()"),
        ("SELECT * FROM url('http://127.0.0.1:1/', 'CSV')", "table function url()"),
        ("SELECT * FROM s3('http://127.0.0.1:1/b/k')", "table function s3()"),
        ("CREATE VIEW lake.leak AS SELECT 1", "CREATE (DDL)"),
        (f"INSERT INTO FUNCTION file('{out}', 'CSV') SELECT 1", "INSERT"),
        ("SET readonly = 0", "SET"),
        ("SELECT 1 SETTINGS max_threads = 1", "SETTINGS"),
    ]:
        _refused(sql_endpoint.post(sql), 403, 164, words)
    _refused(sql_endpoint.post("SELECT 1", readonly="0"), 403, 164, "readonly")
    assert sql_endpoint.post("SHOW TABLES FROM lake").text == before
    assert not out.exists()
    assert not Path(settings.lake_url, "leak").exists()
    assert sql_endpoint.post("SELECT count() FROM lake.shop__orders").text == "4\n"

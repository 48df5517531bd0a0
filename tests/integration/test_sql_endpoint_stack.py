"""`binlake up` serves the lake's SQL views: a change committed in MariaDB is seen through the
endpoint (Debezium, bronze, silver by Dagster, then HTTP), a delete included."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from binlake.demo.shop_schema import SHOP_DDL
from binlake.local_stack import components as c
from binlake.local_stack.stack import LocalStack
from binlake.source_db import connect_source
from tests.support.stack import component, stack_of_tables, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sql_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    yield from stack_of_tables(
        tmp_path_factory, "sql-stack", ["shop.orders"], sql={"port": 0, "refresh_seconds": 1}
    )


def test_a_committed_change_is_queryable_through_the_endpoint(sql_stack: LocalStack) -> None:
    settings = sql_stack.settings
    assert component(sql_stack, c.SQL_ENDPOINT).state == "RUNNING"
    url = f"http://{settings.sql.host}:{settings.sql.port}/"
    auth = (settings.sql.user, settings.sql.password.get_secret_value())
    assert httpx.get(f"{url}ping").text == "Ok.\n"

    def orders() -> str:
        answer = httpx.post(
            url, content="SELECT id, status FROM lake.shop__orders ORDER BY id", auth=auth
        )
        return answer.text if answer.status_code == 200 else ""

    now = datetime(2026, 1, 2, 3, 4, 5)
    with connect_source(settings, admin=True, database="shop") as conn, conn.cursor() as cur:
        for ddl in SHOP_DDL:
            cur.execute(ddl)
        cur.execute("INSERT INTO orders VALUES (1, 7, 'new', %s, %s)", (now, now))
        cur.execute("INSERT INTO orders VALUES (2, 7, 'new', %s, %s)", (now, now))
    wait_for("both orders queryable", lambda: orders() == "1\tnew\n2\tnew\n")

    with connect_source(settings, admin=True, database="shop") as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM orders WHERE id = 1")
        cur.execute("UPDATE orders SET status = 'paid' WHERE id = 2")
    wait_for("the delete and the update queryable", lambda: orders() == "2\tpaid\n")
    refused = httpx.post(url, content="SELECT * FROM file('/etc/passwd')", auth=auth)
    assert refused.status_code == 403

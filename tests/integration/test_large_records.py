"""Rows over 1 MB, end to end: Debezium's producer, the topic, the bronze worker and silver carry
records up to `kafka.max_record_bytes` (32 MiB by default), and every change after a big row
arrives too. Before issue 11 a 1.27 MB row killed the Debezium task and stopped capture of every
table.
"""

from __future__ import annotations

import random
import string

import polars as pl
import pytest

from binlake.demo import lake_checks
from binlake.local_stack.stack import LocalStack
from binlake.source_db import connect_source
from cdc.connect_client import ConnectClient
from cdc.connector_config import request_limit_bytes
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration

TABLE = "shop.edge_big"
MB = 1_000_000


def _text(size: int, seed: int) -> str:
    """`size` characters that do not repeat in any pattern a codec could hide a fault behind."""
    rng = random.Random(seed)
    return "".join(rng.choices(string.ascii_letters + string.digits, k=size))


def test_big_rows_between_small_ones_reach_silver_with_everything_after(
    edge_stack: LocalStack,
) -> None:
    settings = edge_stack.settings
    connect = ConnectClient(settings.connect.url)
    config = connect.get_config(settings.connect.connector_name) or {}
    assert int(config["producer.override.max.request.size"]) == request_limit_bytes(settings)

    with connect_source(settings, admin=True, database="shop") as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE edge_big (id INT PRIMARY KEY, label VARCHAR(20) NOT NULL, "
            "body MEDIUMTEXT NULL)"
        )
        rows = [
            (1, "small", "a"),
            (2, "five MB", _text(5 * MB, 2)),
            (3, "small", "b"),
            (4, "twelve MB", _text(12 * MB, 4)),
            (5, "small", "c"),
        ]
        for row in rows:
            cur.execute("INSERT INTO edge_big VALUES (%s, %s, %s)", row)
        # An update carries both images: about 10 MB and 24 MB change records.
        cur.execute("UPDATE edge_big SET label = 'five MB, 2' WHERE id = 2")
        cur.execute("UPDATE edge_big SET label = 'twelve MB, 2' WHERE id = 4")
        cur.execute("DELETE FROM edge_big WHERE id = 3")
        cur.execute("INSERT INTO edge_big VALUES (6, 'after', 'd')")
        cur.execute("UPDATE edge_big SET body = CONCAT(body, 'e') WHERE id = 5")

    wait_for(
        f"silver {TABLE} equals the source",
        lambda: lake_checks.silver_equals_source(settings, TABLE),
        timeout_s=300,
    )
    silver = lake_checks.silver_without_provenance(settings, TABLE).sort("id")
    assert silver.select("id", "label").rows() == [
        (1, "small"),
        (2, "five MB, 2"),
        (4, "twelve MB, 2"),
        (5, "small"),
        (6, "after"),
    ]
    lengths = dict(silver.select("id", pl.col("body").str.len_bytes()).rows())
    assert lengths[2] == 5 * MB and lengths[4] == 12 * MB
    assert silver.filter(pl.col("id") == 4)["body"].item() == _text(12 * MB, 4)
    assert connect.get_status(settings.connect.connector_name).is_running

"""TRUNCATE TABLE and BIT(n) through the real stack (issue 11, items 3a and 5).

MariaDB -> Debezium (Kafka Connect) -> Kafka -> Faust bronze worker -> Dagster silver by
eager automation, on the shared edge-case stack. Silver is compared with the source row for row
and value for value.
"""

from __future__ import annotations

import base64
import json
import time

import polars as pl
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, TopicPartition

from binlake.bronze.layout import OP, SOURCE_FILE, SOURCE_POS
from binlake.bronze.manifest import Manifest
from binlake.demo import lake_checks
from binlake.local_stack.stack import LocalStack
from binlake.settings import Settings
from binlake.silver.delta_table import DELETED
from binlake.silver.reconcile import compared_columns, silver_digest, source_digest_sql
from binlake.source_db import connect_source
from binlake.storage import LakeStorage
from dagster_defs.resources import SilverLake
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration

TRUNCATE_TABLE = "shop.edge_truncate"
BITS_TABLE = "shop.edge_bits"

BIT64_HIGH_AND_LOW = "1" + "0" * 62 + "1"  # b'1000...0001': HEX() 8000000000000001


def _execute(settings: Settings, *statements: str) -> None:
    with connect_source(settings, admin=True, database="shop") as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _source_rows(settings: Settings, sql: str) -> list[tuple]:
    with connect_source(settings, database="shop") as conn, conn.cursor() as cur:
        cur.execute(sql)
        return [tuple(row) for row in cur.fetchall()]


def _silver(settings: Settings, table: str) -> pl.DataFrame:
    return lake_checks.silver_without_provenance(settings, table)


def _bronze(settings: Settings, table: str) -> pl.DataFrame:
    storage = LakeStorage.from_url(settings.lake_url)
    frames = [
        pl.from_arrow(pq.read_table(storage.full_path(entry.path), filesystem=storage.filesystem))
        for entry in Manifest(storage).entries_for(table)
    ]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _reconciles(settings: Settings, table: str) -> tuple[int, int, int, int]:
    """(source rows, silver rows, source digest, silver digest) as the reconciliation check
    computes them, on the real source."""
    db, name = table.split(".")
    source_columns = _source_rows(
        settings,
        "SELECT COLUMN_NAME, DATA_TYPE, DATETIME_PRECISION FROM information_schema.COLUMNS "
        f"WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = '{name}' ORDER BY ORDINAL_POSITION",
    )
    silver = _silver(settings, table)
    compared, _ = compared_columns(source_columns, silver, masked=[])
    with connect_source(settings) as conn, conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(source_digest_sql(db, name, compared))
        count, digest = cur.fetchone()
    return int(count), silver.height, int(digest) % 2**64, silver_digest(silver, compared)


def test_truncate_then_inserts_and_an_update(edge_stack: LocalStack) -> None:
    settings = edge_stack.settings
    _execute(
        settings,
        "CREATE TABLE edge_truncate (id INT PRIMARY KEY, label VARCHAR(40) NOT NULL, "
        "qty INT NULL, amount DECIMAL(10,2) NULL)",
        "INSERT INTO edge_truncate VALUES (1,'one',1,1.10),(2,'two',2,2.20),(3,'three',3,3.30),"
        "(4,'four',NULL,4.40),(5,'five',5,NULL)",
        "UPDATE edge_truncate SET qty = 30 WHERE id = 3",
    )
    wait_for(
        "silver edge_truncate holds the rows before the truncate",
        lambda: lake_checks.silver_equals_source(settings, TRUNCATE_TABLE),
    )
    assert _silver(settings, TRUNCATE_TABLE).height == 5

    started = time.monotonic()
    _execute(
        settings,
        "TRUNCATE TABLE edge_truncate",
        # after it: a new key, a key the truncate removed inserted again, then updates
        "INSERT INTO edge_truncate VALUES (6,'six',6,6.60),(2,'two again',22,22.22),"
        "(7,'seven',7,7.70)",
        "UPDATE edge_truncate SET label = 'seven updated', amount = 77.77 WHERE id = 7",
        "DELETE FROM edge_truncate WHERE id = 6",
        "INSERT INTO edge_truncate VALUES (8,'eight',NULL,NULL)",
    )
    source = _source_rows(settings, "SELECT id, label, qty, amount FROM edge_truncate ORDER BY id")
    assert [row[0] for row in source] == [2, 7, 8]

    def silver_rows() -> list[tuple]:
        silver = _silver(settings, TRUNCATE_TABLE).sort("id")
        return [tuple(r) for r in silver.select("id", "label", "qty", "amount").iter_rows()]

    wait_for(
        "silver edge_truncate equals the source after the truncate", lambda: silver_rows() == source
    )
    print(f"truncate + 5 changes reached silver in {time.monotonic() - started:.1f} s")
    # value for value, and no truncated row (1, 3, 4, 5, the old 2) survives
    assert silver_rows() == source
    assert lake_checks.silver_equals_source(settings, TRUNCATE_TABLE)

    # Bronze keeps the TRUNCATE: op t, every table column null, its binlog position.
    bronze = _bronze(settings, TRUNCATE_TABLE)
    truncates = bronze.filter(pl.col(OP) == "t")
    assert truncates.height == 1
    truncate = truncates.row(0, named=True)
    assert truncate[SOURCE_FILE] and truncate[SOURCE_POS] is not None
    assert all(truncate[c] is None for c in ("id", "label", "qty", "amount"))
    # the Kafka tombstones after the deletes are "x", without a position
    tombstones = bronze.filter(pl.col(OP) == "x")
    assert tombstones.height >= 1 and tombstones[SOURCE_POS].null_count() == tombstones.height

    # Silver keeps the truncated keys as tombstones at the truncate's position.
    stored = SilverLake(storage_url=settings.lake_url).table(TRUNCATE_TABLE).read_all()
    gone = stored.filter(pl.col("id").is_in([1, 3, 4, 5])).sort("id")
    assert gone.select("id", OP, DELETED, SOURCE_POS).rows() == [
        (key, "t", True, truncate[SOURCE_POS]) for key in (1, 3, 4, 5)
    ]
    consumed = SilverLake(storage_url=settings.lake_url).table(TRUNCATE_TABLE).consumed()
    assert consumed.truncated_at is not None
    assert consumed.truncated_at.pos == truncate[SOURCE_POS]

    # The reconciliation check's digest agrees with the source after the truncate.
    source_count, silver_count, source_digest, lake_digest = _reconciles(settings, TRUNCATE_TABLE)
    assert (source_count, silver_count) == (3, 3) and source_digest == lake_digest


def _raw_bits_records(settings: Settings, topic: str, count: int) -> list[dict]:
    """The first `count` change records of `topic` as Debezium wrote them (JSON, with schema)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": "test-truncate-and-bits-raw",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        records: list[dict] = []
        deadline = time.monotonic() + 60
        while len(records) < count and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() or message.value() is None:
                continue
            records.append(json.loads(message.value()))
        return records
    finally:
        consumer.close()


def test_bits_read_as_mysql_shows_them(edge_stack: LocalStack) -> None:
    settings = edge_stack.settings
    rows = [
        (1, "b'1'", "b'10110'", f"b'{BIT64_HIGH_AND_LOW}'", "0x0102"),
        (2, "b'0'", "b'00001'", "0x0102030405060708", "0x8001"),
        (3, "b'1'", "b'10000'", "b'1'", "0x0000"),
        (4, "NULL", "NULL", "NULL", "NULL"),
    ]
    _execute(
        settings,
        "CREATE TABLE edge_bits (id INT PRIMARY KEY, b1 BIT(1) NULL, b5 BIT(5) NULL, "
        "b64 BIT(64) NULL, b16 BIT(16) NULL)",
        "INSERT INTO edge_bits VALUES " + ",".join(f"({', '.join(map(str, r))})" for r in rows),
    )
    source = _source_rows(
        settings,
        "SELECT id, HEX(b1), HEX(b5), HEX(b64), HEX(b16), "
        "CAST(b64 AS UNSIGNED) FROM edge_bits ORDER BY id",
    )
    assert source[0][3] == "8000000000000001"  # the source's own reading of b'1000...0001'

    def silver_hex() -> list[tuple]:
        silver = _silver(settings, BITS_TABLE)
        if "id" not in silver.columns:  # nothing merged yet
            return []
        silver = silver.sort("id")

        def hexed(value: bytes | None) -> str | None:
            # compared as numbers: leading zero digits aside
            return None if value is None else (value.hex().upper().lstrip("0") or "0")

        return [
            (
                r["id"],
                None if r["b1"] is None else str(int(r["b1"])),
                hexed(r["b5"]),
                hexed(r["b64"]),
                hexed(r["b16"]),
                None if r["b64"] is None else int.from_bytes(r["b64"], "big"),
            )
            for r in silver.iter_rows(named=True)
        ]

    wait_for("silver edge_bits holds every row", lambda: len(silver_hex()) == len(rows))

    def number_hex(text: str | None) -> str | None:
        return None if text is None else (text.lstrip("0") or "0")

    assert silver_hex() == [
        (
            id_,
            number_hex(b1),
            number_hex(b5),
            number_hex(b64),
            number_hex(b16),
            None if number is None else int(number),
        )
        for id_, b1, b5, b64, b16, number in source
    ]
    silver = _silver(settings, BITS_TABLE).sort("id")
    assert silver.schema["b1"] == pl.Boolean
    # silver holds ceil(n/8) bytes in MySQL's order
    assert silver["b64"].to_list()[:2] == [
        bytes.fromhex("8000000000000001"),
        bytes.fromhex("0102030405060708"),
    ]
    assert silver["b5"].to_list()[:2] == [b"\x16", b"\x01"]
    assert silver["b16"].to_list()[:3] == [b"\x01\x02", b"\x80\x01", b"\x00\x00"]

    # What Debezium 3.0.7 sent: BIT(1) a boolean, BIT(n > 1) io.debezium.data.Bits with the
    # length parameter, little-endian bytes of ceil(n/8).
    records = _raw_bits_records(settings, settings.topic_for(BITS_TABLE), len(rows))
    fields = {f["field"]: f for f in records[0]["schema"]["fields"][1]["fields"]}
    assert fields["b1"]["type"] == "boolean"
    assert fields["b64"]["name"] == "io.debezium.data.Bits"
    assert (fields["b5"]["parameters"], fields["b64"]["parameters"]) == (
        {"length": "5"},
        {"length": "64"},
    )
    sent = {
        r["payload"]["after"]["id"]: {
            c: base64.b64decode(r["payload"]["after"][c]).hex() for c in ("b5", "b16", "b64")
        }
        for r in records
        if r["payload"]["after"]["b64"] is not None
    }
    print(f"Debezium sent for edge_bits: {sent}")
    assert sent[1] == {"b5": "16", "b16": "0201", "b64": "0100000000000080"}
    assert sent[3]["b16"] == "0000" and sent[3]["b64"] == "0100000000000000"

    source_count, silver_count, source_digest, lake_digest = _reconciles(settings, BITS_TABLE)
    assert (source_count, silver_count) == (4, 4) and source_digest == lake_digest

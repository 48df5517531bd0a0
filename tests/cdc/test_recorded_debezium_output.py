"""Records captured from the real Debezium 3.0.7 MySQL connector (JSON converter, schemas on)
against MariaDB, for a table with one column of each temporal, decimal and special type:

    CREATE TABLE t1 (id INT PRIMARY KEY, d DATE, t TIME(3), dt DATETIME(6), dt0 DATETIME,
      ts TIMESTAMP(6) NULL, dec1 DECIMAL(10,2), dec2 DECIMAL(65,30), y YEAR, b BIT(3),
      e ENUM('a','b'), s SET('x','y'), j JSON, bl BLOB, v VARCHAR(10));
    -- snapshot of one row, then UPDATE t1 SET v='x2'; DELETE FROM t1 (+ tombstone)
"""

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from cdc.json_decoding import decode_change

RECORDS = json.loads(
    (Path(__file__).parents[1] / "fixtures/debezium_mysql_all_types.json").read_text()
)


def _decode(record: dict):
    key = record["key"].encode() if record["key"] else None
    value = record["value"].encode() if record["value"] else None
    return decode_change(key, value, topic="binlake.shop.t1", topic_prefix="binlake")


def test_snapshot_update_delete_and_tombstone_in_order() -> None:
    events = [_decode(r) for r in RECORDS]
    assert [e.op for e in events] == ["r", "u", "d", "x"]
    assert {e.table for e in events} == {"shop.t1"}
    assert all(e.primary_key == ("id",) for e in events)
    assert events[1].row["v"] == "x2" and events[2].row["v"] == "x2"
    assert events[3].row == {"id": 1} and events[3].source is None
    assert events[1].source.file == "mariadb-bin.000001" and events[1].source.pos == 2390
    assert events[0].source.snapshot == "last"


def test_every_type_decodes_to_the_value_mariadb_holds() -> None:
    row = _decode(RECORDS[0]).row
    assert row["d"] == date(2024, 2, 3)
    assert row["t"] == -timedelta(hours=12, minutes=34, seconds=56, milliseconds=789)
    assert row["dt"] == datetime(2024, 1, 1, 10, 11, 12, 123456)
    assert row["dt0"] == datetime(2024, 1, 1, 10, 11, 12)
    assert row["ts"] == datetime(2024, 1, 1, 10, 11, 12, 500000, tzinfo=UTC)
    assert row["dec1"] == Decimal("-12.34")
    assert row["dec2"] == Decimal("123.000000000000000000000000000001")
    assert (row["y"], row["b"], row["e"], row["s"]) == (2024, b"\x05", "b", "x,y")
    assert (row["j"], row["bl"], row["v"]) == ('{"a":1}', b"abc", "hé")


def test_decoded_rows_fit_their_arrow_schema() -> None:
    event = _decode(RECORDS[0])
    table = pa.Table.from_pylist([event.row], schema=event.row_schema)
    types = dict(zip(table.schema.names, table.schema.types, strict=True))
    assert types["dec1"] == pa.decimal128(10, 2)
    assert types["dec2"] == pa.decimal256(65, 30)
    assert types["dt"] == pa.timestamp("us") and types["dt0"] == pa.timestamp("ms")
    assert types["ts"] == pa.timestamp("us", tz="UTC")
    assert types["t"] == pa.duration("us") and types["d"] == pa.date32()
    assert table.schema.field("id").nullable is False


def test_integers_beyond_64_bits_stay_exact() -> None:
    """orjson parses such integers as floats; the decoder must fall back to exact parsing so the
    worker's type check sees the real value (and dead-letters it) instead of a rounded one."""
    value = json.loads(RECORDS[1]["value"])
    value["payload"]["after"]["id"] = 2**70 + 1
    event = _decode({"key": RECORDS[1]["key"], "value": json.dumps(value)})
    assert event.row["id"] == 2**70 + 1 and isinstance(event.row["id"], int)

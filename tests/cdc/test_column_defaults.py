"""Column defaults from Debezium's Connect schema into Arrow field metadata (`cdc.column_defaults`).

The recorded records come from the real stack (Connect 3.9, Debezium 3.0.7, MariaDB 10.11):

    CREATE TABLE probe (id INT PRIMARY KEY, a VARCHAR(20) NOT NULL); ALTER TABLE probe ADD COLUMN c
    INT NOT NULL DEFAULT 7;  ADD COLUMN n VARCHAR(10) NULL DEFAULT 'x';
      ADD COLUMN z INT NOT NULL;  ADD COLUMN s VARCHAR(5) NOT NULL;  ADD COLUMN dt DATETIME NOT
      NULL; ADD COLUMN e ENUM('p','q') NOT NULL;  ADD COLUMN dd DECIMAL(6,2) NOT NULL DEFAULT 1.50;
      ADD COLUMN ts TIMESTAMP NOT NULL DEFAULT '2020-01-02 03:04:05'; ADD COLUMN b VARBINARY(4) NULL
      DEFAULT 'ab';
    INSERT INTO probe (id, a, n, z, s, dt, e) VALUES (3, 'three', NULL, 0, '', '2020-01-01', 'q');
    ... CHANGE a a2 VARCHAR(20) NOT NULL; ALTER COLUMN c SET DEFAULT 9; UPDATE ... WHERE id = 3

Debezium sends `"default"` for every column declared with one, and none for NOT NULL columns
declared without (z, s, dt, e). The insert's n arrived as "x" although the row holds NULL: the
JsonConverter of that stack still had replace.null.with.default=true, which the connector config
now turns off (`cdc.connector_config`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from cdc.avro import avro_to_connect
from cdc.column_defaults import (
    DEFAULT_KEY,
    column_default,
    encode_default,
    has_unknown_default,
    with_default,
)
from cdc.connect_schema import StructPlan
from cdc.json_decoding import decode_change
from tests.support.avro import record

RECORDS = json.loads(
    (Path(__file__).parents[1] / "fixtures/debezium_mysql_column_defaults.json").read_text()
)


def _decode(captured: dict):
    return decode_change(
        captured["key"].encode(),
        captured["value"].encode(),
        topic="binlake.shop.probe",
        topic_prefix="binlake",
    )


def _defaults(schema: pa.Schema) -> dict[str, object]:
    return {
        f.name: (None if column_default(f) is None else column_default(f).as_py()) for f in schema
    }


def test_recorded_defaults_become_field_metadata_with_exact_values():
    event = _decode(RECORDS[0])
    assert _defaults(event.row_schema) == {
        "id": 0,  # NOT NULL without a default: MySQL's implicit 0 (harmless on a key)
        "a": "",
        "c": 7,
        "n": "x",
        "z": 0,  # implicit defaults, which Debezium does not send
        "s": "",
        "dt": datetime(1970, 1, 1),  # Debezium's zero DATETIME of a NOT NULL column
        "e": "p",  # an ENUM's first value
        "dd": Decimal("1.50"),
        "ts": datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC),
        "b": b"ab",
    }
    assert not any(has_unknown_default(f) for f in event.row_schema)
    # The metadata is readable text.
    assert event.row_schema.field("c").metadata[DEFAULT_KEY] == b"7"
    assert event.row_schema.field("dd").metadata[DEFAULT_KEY] == b'"1.50"'


def test_a_later_set_default_shows_in_the_schema_debezium_sends():
    assert _defaults(_decode(RECORDS[1]).row_schema)["c"] == 9


def _plan(*fields: dict) -> StructPlan:
    return StructPlan({"type": "struct", "fields": list(fields)}, what="row")


def test_a_nullable_column_without_default_has_none_and_unknown_implicit_defaults_are_marked():
    plan = _plan(
        {"field": "n", "type": "string", "optional": True},
        {"field": "bin", "type": "bytes", "optional": False},  # BINARY(n): n zero bytes
        {"field": "y", "type": "int32", "optional": False, "name": "io.debezium.time.Year"},
        {"field": "tm", "type": "int64", "optional": False, "name": "io.debezium.time.MicroTime"},
    )
    schema = plan.arrow_schema
    assert schema.field("n").metadata is None
    assert has_unknown_default(schema.field("bin")) and column_default(schema.field("bin")) is None
    assert has_unknown_default(schema.field("y"))
    assert column_default(schema.field("tm")).as_py().total_seconds() == 0


def test_a_current_timestamp_default_is_unknown_not_the_epoch():
    """DEFAULT CURRENT_TIMESTAMP reaches the schema as the epoch; MySQL gives existing rows the
    ALTER's time, so the column's default is unknown (a resync fills it), never 1970."""
    plan = _plan(
        {
            "field": "ts",
            "type": "string",
            "optional": False,
            "name": "io.debezium.time.ZonedTimestamp",
            "default": "1970-01-01T00:00:00Z",
        },
        {
            "field": "dt",
            "type": "int64",
            "optional": False,
            "name": "io.debezium.time.MicroTimestamp",
            "default": 0,
        },
        {
            "field": "set",
            "type": "string",
            "optional": False,
            "name": "io.debezium.time.ZonedTimestamp",
            "default": "2020-01-02T03:04:05Z",
        },
        {
            "field": "tm",
            "type": "int64",
            "optional": False,
            "name": "io.debezium.time.MicroTime",
            "default": 0,
        },
    )
    schema = plan.arrow_schema
    assert has_unknown_default(schema.field("ts")) and has_unknown_default(schema.field("dt"))
    assert column_default(schema.field("set")).as_py() == datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert column_default(schema.field("tm")).as_py().total_seconds() == 0  # '00:00:00' is real


def test_a_default_that_does_not_fit_its_type_is_a_clear_decode_error():
    from binlake.errors import DecodeError

    with pytest.raises(DecodeError, match="default 'abc' of column 'c' does not fit"):
        _plan({"field": "c", "type": "int32", "optional": False, "default": "abc"})


@pytest.mark.parametrize(
    ("value", "data_type"),
    [
        (7, pa.int32()),
        (-(2**63), pa.int64()),
        (1.25, pa.float64()),
        (True, pa.bool_()),
        ("x'y\"", pa.string()),
        (b"\x00\xff", pa.binary()),
        (Decimal("-12345678901234567890.123456789"), pa.decimal128(38, 9)),
        (Decimal("1E-30"), pa.decimal256(65, 30)),
        (datetime(2020, 1, 2, 3, 4, 5, 678901), pa.timestamp("us")),
        (datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC), pa.timestamp("us", tz="UTC")),
        (datetime(2020, 1, 2).date(), pa.date32()),
    ],
    ids=str,
)
def test_every_type_round_trips_exactly(value, data_type):
    field = pa.field("c", data_type, metadata={DEFAULT_KEY: encode_default(value, data_type)})
    assert column_default(field) == pa.scalar(value, data_type)


def test_a_default_recorded_before_a_widening_is_cast_to_the_wider_type():
    field = pa.field("c", pa.int64(), metadata={DEFAULT_KEY: encode_default(7, pa.int32())})
    assert column_default(field) == pa.scalar(7, pa.int64())


def test_with_default_takes_the_other_fields_default_or_removes_it():
    seven = pa.field("c", pa.int32(), metadata={DEFAULT_KEY: b"7"})
    nine = pa.field("c", pa.int32(), metadata={DEFAULT_KEY: b"9"})
    assert with_default(nine, seven).metadata == {DEFAULT_KEY: b"7"}
    assert with_default(nine, pa.field("c", pa.int32())).metadata is None


def test_avro_field_defaults_become_connect_defaults():
    avro = record(
        "Value",
        "binlake.shop.probe",
        [
            {"name": "id", "type": "int"},
            {"name": "c", "type": {"type": "int", "connect.default": 7}, "default": 7},
            {"name": "n", "type": ["string", "null"], "default": "x"},
            {"name": "b", "type": ["bytes", "null"], "default": "a\u00ff"},
            # As Apicurio's AvroConverter (Confluent's AvroData) registered them for MariaDB
            # columns `bits BIT(3) DEFAULT b'101'` and `price DECIMAL(10,2) DEFAULT 1.50`.
            {
                "name": "bits",
                "type": [
                    {
                        "type": "bytes",
                        "connect.version": 1,
                        "connect.parameters": {"length": "3"},
                        "connect.default": "\u0005",
                        "connect.name": "io.debezium.data.Bits",
                    },
                    "null",
                ],
                "default": "\u0005",
            },
            {
                "name": "price",
                "type": [
                    {
                        "type": "bytes",
                        "scale": 2,
                        "precision": 10,
                        "connect.version": 1,
                        "connect.parameters": {"scale": "2", "connect.decimal.precision": "10"},
                        "connect.default": "\u0000\u0096",
                        "connect.name": "org.apache.kafka.connect.data.Decimal",
                        "logicalType": "decimal",
                    },
                    "null",
                ],
                "default": "\u0000\u0096",
            },
            # Not Avro's encoding of bytes (a code point above 255): not guessed.
            {"name": "odd", "type": ["bytes", "null"], "default": "\u0100"},
        ],
    )
    connect = avro_to_connect(avro)
    plan = StructPlan(connect, base64_bytes=False, what="row")
    assert _defaults(plan.arrow_schema) == {
        "id": 0,
        "c": 7,
        "n": "x",
        "b": b"a\xff",
        "bits": b"\x05",
        "price": Decimal("1.50"),
        "odd": None,
    }
    assert has_unknown_default(plan.arrow_schema.field("odd"))
    assert not has_unknown_default(plan.arrow_schema.field("price"))

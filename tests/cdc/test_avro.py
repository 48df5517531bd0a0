"""Confluent wire format and Debezium AvroConverter records, encoded here with fastavro."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import fastavro
import httpx
import pyarrow as pa
import pytest

from binlake.errors import DecodeError, RetriableError
from cdc.avro import (
    ConfluentAvroDecoder,
    SchemaRegistryUnavailable,
    avro_to_connect,
    split_wire_format,
    without_logical_types,
)
from cdc.envelope import SchemaChangeRecord
from tests.support.avro import envelope_record, key_record, optional, record, source_record
from tests.support.debezium import source as debezium_source

REGISTRY = "http://registry:8081"
KEY_ID, VALUE_ID, DDL_ID = 1, 2, 3


# The shapes Debezium's AvroConverter registers (Connect schema kept in connect.* properties).
VALUE_RECORD = record(
    "Value",
    "binlake.shop.orders",
    [
        {"name": "id", "type": "long"},
        {"name": "qty", "type": {"type": "int", "connect.type": "int16"}},
        {
            "name": "total",
            "type": {
                "type": "bytes",
                "scale": 2,
                "precision": 12,
                "connect.version": 1,
                "connect.parameters": {"scale": "2", "connect.decimal.precision": "12"},
                "connect.name": "org.apache.kafka.connect.data.Decimal",
                "logicalType": "decimal",
            },
        },
        {
            "name": "placed_at",
            "type": {
                "type": "long",
                "connect.version": 1,
                "connect.name": "io.debezium.time.MicroTimestamp",
            },
        },
        optional(
            {
                "type": "string",
                "connect.version": 1,
                "connect.name": "io.debezium.time.ZonedTimestamp",
            },
            "updated_at",
        ),
        optional(
            {"type": "int", "connect.version": 1, "connect.name": "io.debezium.time.Date"}, "ship"
        ),
        optional(
            {"type": "long", "connect.version": 1, "connect.name": "io.debezium.time.MicroTime"},
            "prep",
        ),
        optional("bytes", "blob"),
        optional(
            {
                "type": "string",
                "connect.version": 1,
                "connect.parameters": {"allowed": "new,paid"},
                "connect.name": "io.debezium.data.Enum",
            },
            "status",
        ),
        optional("double", "weight"),
        optional(
            {
                "type": "bytes",
                "connect.version": 1,
                "connect.parameters": {"length": "16"},
                "connect.name": "io.debezium.data.Bits",
            },
            "flags",
        ),
    ],
    "binlake.shop.orders.Value",
)

SOURCE_RECORD = source_record(sub_millisecond_times=True)
VALUE_SCHEMA = envelope_record(VALUE_RECORD, "binlake.shop.orders", sub_millisecond_times=True)
KEY_SCHEMA = key_record("binlake.shop.orders")

DDL_SCHEMA = record(
    "SchemaChangeValue",
    "io.debezium.connector.mysql",
    [
        {"name": "source", "type": SOURCE_RECORD},
        {"name": "ts_ms", "type": "long"},
        optional("string", "databaseName"),
        optional("string", "ddl"),
    ],
    "io.debezium.connector.mysql.SchemaChangeValue",
)

SCHEMAS = {KEY_ID: KEY_SCHEMA, VALUE_ID: VALUE_SCHEMA, DDL_ID: DDL_SCHEMA}


def frame(schema_id: int, schema: dict[str, Any], datum: dict[str, Any]) -> bytes:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), datum)
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()


def source(**overrides: Any) -> dict[str, Any]:
    return debezium_source(ts_us=None, ts_ns=None) | overrides


ROW = {
    "id": 1001,
    "qty": -3,
    "total": Decimal("-123.45"),
    "placed_at": 1795248000123456,
    "updated_at": "2026-11-21T08:00:00.123456Z",
    "ship": 20413,
    "prep": -3_600_000_000,
    "blob": b"\x00\x01",
    "status": "paid",
    "weight": None,
    "flags": b"\x02\x01",  # BIT(16) b'0000000100000010', little-endian as Debezium sends it
}

EXPECTED = {
    "id": 1001,
    "qty": -3,
    "total": Decimal("-123.45"),
    "placed_at": datetime(2026, 11, 21, 8, 0, 0, 123456),
    "updated_at": datetime(2026, 11, 21, 8, 0, 0, 123456, tzinfo=UTC),
    "ship": date(2025, 11, 21),
    "prep": timedelta(hours=-1),
    "blob": b"\x00\x01",
    "status": "paid",
    "weight": None,
    "flags": b"\x01\x02",  # in MySQL's byte order (HEX() = 0102)
}


def value(op: str, before: dict | None, after: dict | None) -> bytes:
    datum = {
        "before": before,
        "after": after,
        "source": source(),
        "transaction": None,
        "op": op,
        "ts_ms": 1795248000456,
        "ts_us": None,
        "ts_ns": None,
    }
    return frame(VALUE_ID, VALUE_SCHEMA, datum)


def key(order_id: int = 1001) -> bytes:
    return frame(KEY_ID, KEY_SCHEMA, {"id": order_id})


class Registry:
    def __init__(self) -> None:
        self.hits: list[int] = []
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            return httpx.Response(503, text="unavailable")
        schema_id = int(request.url.path.rsplit("/", 1)[1])
        self.hits.append(schema_id)
        if schema_id not in SCHEMAS:
            return httpx.Response(404, json={"error_code": 40403, "message": "Schema not found"})
        return httpx.Response(200, json={"schema": json.dumps(SCHEMAS[schema_id])})


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def decoder(registry: Registry):
    client = httpx.Client(transport=httpx.MockTransport(registry))
    with ConfluentAvroDecoder(REGISTRY + "/", client) as d:
        yield d
    client.close()


def decode(decoder: ConfluentAvroDecoder, k: bytes | None, v: bytes | None, topic: str = ""):
    return decoder.decode_change(k, v, topic=topic or "binlake.shop.orders", topic_prefix="binlake")


# -- wire format -------------------------------------------------------------------------------


def test_split_wire_format():
    schema_id, body = split_wire_format(b"\x00\x00\x00\x01\x02body")
    assert schema_id == 258
    assert bytes(body) == b"body"


def test_bad_magic_byte():
    with pytest.raises(DecodeError, match="starts with byte 0x7b, not the Confluent magic"):
        split_wire_format(b'{"schema":1}')


def test_too_short():
    with pytest.raises(DecodeError, match="3 bytes, shorter than the 5-byte"):
        split_wire_format(b"\x00\x00\x01")


def test_decode_returns_schema_id_and_datum_and_caches_the_schema(decoder, registry):
    assert decoder.decode(key(5)) == (KEY_ID, {"id": 5})
    assert decoder.decode(key(6)) == (KEY_ID, {"id": 6})
    assert registry.hits == [KEY_ID]


def test_unknown_schema_id(decoder):
    with pytest.raises(DecodeError, match="schema id 99 is unknown to the registry"):
        decoder.decode(b"\x00\x00\x00\x00\x63\x02")


def test_registry_down_is_retriable(decoder, registry):
    registry.down = True
    with pytest.raises(SchemaRegistryUnavailable, match="HTTP 503") as info:
        decoder.decode(key())
    assert isinstance(info.value, RetriableError)


def test_registry_unreachable_is_retriable():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    client = httpx.Client(transport=httpx.MockTransport(refuse))
    with pytest.raises(SchemaRegistryUnavailable, match="unreachable"):
        ConfluentAvroDecoder(REGISTRY, client).decode(key())


def test_body_that_does_not_match_the_schema(decoder):
    with pytest.raises(DecodeError, match="does not match schema id 1"):
        decoder.decode(b"\x00\x00\x00\x00\x01")  # no bytes for the long
    with pytest.raises(DecodeError, match="1 bytes left over"):
        decoder.decode(key() + b"\x00")


# -- change events ------------------------------------------------------------------------------


def test_create_event(decoder):
    event = decode(decoder, key(), value("c", None, ROW))

    assert event.op == "c"
    assert event.table == "shop.orders"
    assert event.primary_key == ("id",)
    assert event.row == EXPECTED
    assert event.captured_ts_ms == 1795248000456
    assert event.source is not None and event.source.file == "mariadb-bin.000003"
    assert event.row_schema.field("qty").type == pa.int16()
    assert event.row_schema.field("total").type == pa.decimal128(12, 2)
    assert not event.row_schema.field("total").nullable
    assert event.row_schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
    assert event.row_schema.field("prep").type == pa.duration("us")
    table = pa.Table.from_pylist([event.row], schema=event.row_schema)
    assert table.to_pylist() == [EXPECTED]


def test_update_and_delete(decoder):
    updated = decode(decoder, key(), value("u", ROW, {**ROW, "status": "new"}))
    deleted = decode(decoder, key(), value("d", ROW, None))

    assert updated.row["status"] == "new"
    assert deleted.op == "d" and deleted.row == EXPECTED
    assert updated.row_schema is deleted.row_schema


def test_tombstone(decoder):
    event = decode(decoder, key(7), None)

    assert event.op == "x"
    assert event.row == {"id": 7}
    assert event.table == "shop.orders"
    assert event.source is None


def test_truncate(decoder):
    event = decode(decoder, None, value("t", None, None))

    assert (event.op, event.row, event.primary_key) == ("t", {}, ())
    assert event.is_truncate and event.table == "shop.orders"
    assert event.source is not None
    assert (event.source.file, event.source.pos, event.source.row) == (
        "mariadb-bin.000003",
        4512,
        0,
    )
    assert event.row_schema.names[-1] == "flags"


def test_schema_change_record(decoder):
    ddl = frame(
        DDL_ID,
        DDL_SCHEMA,
        {"source": source(), "ts_ms": 1, "databaseName": "shop", "ddl": "ALTER TABLE x"},
    )
    with pytest.raises(SchemaChangeRecord):
        decode(decoder, None, ddl, topic="binlake")


def test_unknown_op(decoder):
    with pytest.raises(DecodeError, match="unknown op 'x'"):
        decode(decoder, key(), value("x", None, ROW))


def test_avro_to_connect_resolves_named_types_and_connect_properties():
    connect = avro_to_connect(VALUE_SCHEMA)
    before, after = connect["fields"][0], connect["fields"][1]

    assert before["optional"] and after["optional"]
    assert after["name"] == "binlake.shop.orders.Value"
    assert [f["field"] for f in after["fields"]] == [f["name"] for f in VALUE_RECORD["fields"]]
    total = after["fields"][2]
    assert total["name"] == "org.apache.kafka.connect.data.Decimal"
    assert total["parameters"] == {"scale": "2", "connect.decimal.precision": "12"}
    assert after["fields"][1]["type"] == "int16"
    snapshot = connect["fields"][2]["fields"][4]
    assert snapshot["optional"] and snapshot["name"] == "io.debezium.data.Enum"


def test_without_logical_types():
    stripped = without_logical_types(VALUE_RECORD)
    assert "logicalType" not in json.dumps(stripped)
    assert "logicalType" in json.dumps(VALUE_RECORD)


def test_registry_schema_of_another_type(registry):
    def protobuf(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"schemaType": "PROTOBUF", "schema": "syntax = ..."})

    client = httpx.Client(transport=httpx.MockTransport(protobuf))
    with pytest.raises(DecodeError, match="is PROTOBUF, not AVRO"):
        ConfluentAvroDecoder(REGISTRY, client).decode(key())


def test_registry_schema_that_is_not_avro_json():
    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"schema": "{not json"})

    client = httpx.Client(transport=httpx.MockTransport(garbage))
    with pytest.raises(DecodeError, match="not a usable Avro schema"):
        ConfluentAvroDecoder(REGISTRY, client).decode(key())


def test_neither_key_nor_value(decoder):
    with pytest.raises(DecodeError, match="neither key nor value"):
        decode(decoder, None, None)

"""Decoding of Debezium 3.0 MySQL change records (JsonConverter, schemas.enable=true)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from binlake.errors import DecodeError
from cdc.connect_schema import arrow_schema_for
from cdc.envelope import (
    LEGACY_TOMBSTONE,
    OPS,
    TOMBSTONE,
    TRUNCATE,
    ChangeEvent,
    SchemaChangeRecord,
    SourcePosition,
    source_position,
)
from cdc.json_decoding import clear_schema_cache, decode_change
from tests.support.debezium import (
    DECODED_ORDER,
    ORDER_COLUMNS,
    PREFIX,
    SOURCE_SCHEMA,
    TOPIC,
    b64,
    dumps,
    envelope_schema,
    key_bytes,
    order_row,
    source,
    unscaled,
    value_bytes,
)
from tests.support.debezium import connect_field as _f
from tests.support.debezium import decimal_field as _decimal


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_schema_cache()
    yield
    clear_schema_cache()


def decode(key: bytes | None, value: bytes | None, topic: str = TOPIC) -> ChangeEvent:
    return decode_change(key, value, topic=topic, topic_prefix=PREFIX)


EXPECTED_ORDER_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("customer_id", pa.int32(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("total", pa.decimal128(12, 2), nullable=False),
        pa.field("weight", pa.float64()),
        pa.field("placed_at", pa.timestamp("us"), nullable=False),
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
        pa.field("ship_date", pa.date32()),
        pa.field("prep_time", pa.duration("us")),
        pa.field("note", pa.string()),
        pa.field("attrs", pa.string()),
        pa.field("small", pa.int16()),
        pa.field("tiny", pa.int8()),
        pa.field("ratio", pa.float32()),
        pa.field("paid", pa.bool_()),
    ]
)


def roundtrip(event: ChangeEvent) -> dict[str, Any]:
    table = pa.Table.from_pylist([event.row], schema=event.row_schema)
    return table.to_pylist()[0]


# -- ops ----------------------------------------------------------------------------------------


def test_create_event_decodes_row_schema_key_and_source():
    event = decode(key_bytes(), value_bytes("c", None, order_row()))

    assert event.table == "shop.orders"
    assert event.op == "c"
    assert event.row == DECODED_ORDER
    assert list(event.row) == list(DECODED_ORDER)
    assert event.row_schema.equals(EXPECTED_ORDER_SCHEMA)
    assert event.primary_key == ("id",)
    assert event.captured_ts_ms == 1795248000456
    assert event.source == SourcePosition(
        file="mariadb-bin.000003",
        pos=4512,
        row=0,
        ts_ms=1795248000000,
        snapshot="false",
        db="shop",
        table="orders",
        server_id=1,
        gtid=None,
    )
    assert not event.is_tombstone
    assert roundtrip(event) == DECODED_ORDER


def test_update_event_keeps_the_after_image():
    before = order_row(status="new")
    after = order_row(status="shipped", note=None)
    event = decode(key_bytes(), value_bytes("u", before, after))

    assert event.op == "u"
    assert event.row["status"] == "shipped"
    assert event.row["note"] is None
    assert roundtrip(event)["status"] == "shipped"


def test_delete_event_keeps_the_before_image():
    event = decode(key_bytes(), value_bytes("d", order_row(), None))

    assert event.op == "d"
    assert event.row == DECODED_ORDER
    assert event.source is not None and event.source.pos == 4512


def test_snapshot_read_event_carries_the_snapshot_marker():
    src = source(snapshot="first", file="mariadb-bin.000001", pos=328, row=0, thread=None)
    event = decode(key_bytes(), value_bytes("r", None, order_row(), src=src))

    assert event.op == "r"
    assert event.source is not None
    assert event.source.snapshot == "first"
    assert (event.source.file, event.source.pos) == ("mariadb-bin.000001", 328)


def test_tombstone_has_key_fields_and_table_from_topic():
    event = decode(key_bytes(1001), None)

    assert event.op == "x"
    assert event.is_tombstone
    assert event.table == "shop.orders"
    assert event.row == {"id": 1001}
    assert event.row_schema.equals(pa.schema([pa.field("id", pa.int64(), nullable=False)]))
    assert event.primary_key == ("id",)
    assert event.source is None
    assert event.captured_ts_ms is None


def test_table_without_primary_key_has_empty_key():
    event = decode(None, value_bytes("c", None, order_row()))

    assert event.primary_key == ()
    assert event.row["id"] == 1001


def test_composite_key_names_follow_key_field_order():
    schema = {
        "type": "struct",
        "fields": [_f("order_id", "int64"), _f("line_no", "int32")],
        "optional": False,
        "name": f"{PREFIX}.shop.order_items.Key",
    }
    key = dumps({"schema": schema, "payload": {"order_id": 1, "line_no": 2}})
    columns = [_f("order_id", "int64"), _f("line_no", "int32"), _f("qty", "int32")]
    value = value_bytes(
        "c",
        None,
        {"order_id": 1, "line_no": 2, "qty": 3},
        columns=columns,
        src=source(table="order_items"),
    )
    event = decode(key, value, topic="binlake.shop.order_items")

    assert event.table == "shop.order_items"
    assert event.primary_key == ("order_id", "line_no")
    tombstone = decode(key, None, topic="binlake.shop.order_items")
    assert tombstone.row == {"order_id": 1, "line_no": 2}
    assert tombstone.table == "shop.order_items"


def test_schema_change_record_is_told_apart():
    key = dumps(
        {
            "schema": {
                "type": "struct",
                "fields": [_f("databaseName", "string")],
                "optional": False,
                "name": "io.debezium.connector.mysql.SchemaChangeKey",
                "version": 1,
            },
            "payload": {"databaseName": "shop"},
        }
    )
    value = dumps(
        {
            "schema": {
                "type": "struct",
                "fields": [
                    SOURCE_SCHEMA,
                    _f("ts_ms", "int64"),
                    _f("databaseName", "string", True),
                    _f("schemaName", "string", True),
                    _f("ddl", "string", True),
                    {
                        "type": "array",
                        "items": {"type": "struct", "fields": [], "optional": False},
                        "optional": False,
                        "field": "tableChanges",
                    },
                ],
                "optional": False,
                "name": "io.debezium.connector.mysql.SchemaChangeValue",
                "version": 1,
            },
            "payload": {
                "source": source(table=None),
                "ts_ms": 1795248000456,
                "databaseName": "shop",
                "schemaName": None,
                "ddl": "ALTER TABLE orders ADD COLUMN coupon VARCHAR(20)",
                "tableChanges": [],
            },
        }
    )
    with pytest.raises(SchemaChangeRecord, match="schema-change"):
        decode(key, value, topic=PREFIX)
    assert issubclass(SchemaChangeRecord, DecodeError)


def test_null_value_on_schema_change_topic_is_a_schema_change_record():
    with pytest.raises(SchemaChangeRecord):
        decode(key_bytes(), None, topic=PREFIX)


# -- type mapping ---------------------------------------------------------------------------------


def one_column(column: dict[str, Any], value: Any) -> ChangeEvent:
    columns = [_f("id", "int64"), column]
    row = {"id": 1, column["field"]: value}
    return decode(key_bytes(1), value_bytes("c", None, row, columns=columns))


def column_type(event: ChangeEvent) -> pa.DataType:
    return event.row_schema.field(1).type


@pytest.mark.parametrize(
    ("precision", "scale", "unscaled_value", "expected"),
    [
        (12, 2, -12345, Decimal("-123.45")),
        (12, 2, -1, Decimal("-0.01")),
        (12, 2, 0, Decimal("0.00")),
        (10, 0, 2**31, Decimal(2147483648)),
        (20, 0, 18446744073709551615, Decimal(18446744073709551615)),  # BIGINT UNSIGNED
        (38, 10, -(10**37) + 1, Decimal(f"-{'9' * 27}.{'9' * 10}")),
    ],
)
def test_decimal128(precision, scale, unscaled_value, expected):
    event = one_column(_decimal("amount", precision, scale), unscaled(unscaled_value))

    assert column_type(event) == pa.decimal128(precision, scale)
    assert event.row["amount"] == expected
    assert roundtrip(event)["amount"] == expected


@pytest.mark.parametrize(
    "text",
    [
        "12345678901234567890123456789012345.123456789012345678901234567890",
        "-99999999999999999999999999999999999.999999999999999999999999999999",
        "-0.000000000000000000000000000001",
    ],
)
def test_decimal256_keeps_all_65_digits(text):
    expected = Decimal(text)
    whole, fraction = text.split(".")
    unscaled_value = int(whole + fraction.ljust(30, "0"))
    event = one_column(_decimal("big", 65, 30), unscaled(unscaled_value))

    assert column_type(event) == pa.decimal256(65, 30)
    assert event.row["big"] == expected
    assert event.row["big"].as_tuple().exponent == -30
    assert format(event.row["big"], "f") == text
    assert roundtrip(event)["big"] == expected


def test_decimal_with_sign_padding_bytes():
    # Java's BigInteger.toByteArray() adds a 0x00 byte when the top bit would read as a sign.
    event = one_column(_decimal("amount", 5, 2), b64(b"\x00\xff"))

    assert event.row["amount"] == Decimal("2.55")


def test_decimal_numeric_json_format_is_accepted():
    event = one_column(_decimal("amount", 12, 2), -123.45)

    assert event.row["amount"] == Decimal("-123.45")


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("io.debezium.time.MicroTime", -(838 * 3600 + 59 * 60 + 59) * 10**6, "-838:59:59"),
        ("io.debezium.time.MicroTime", (838 * 3600 + 59 * 60 + 59) * 10**6 + 5, "838:59:59.000005"),
        ("io.debezium.time.MicroTime", 30 * 3600 * 10**6, "30:00:00"),
        ("io.debezium.time.Time", -1500, "-00:00:01.5"),
        ("io.debezium.time.NanoTime", 1_000_001_000, "00:00:01.000001"),
    ],
)
def test_time_is_a_duration_that_may_be_negative_or_beyond_a_day(name, raw, expected):
    event = one_column(_f("t", "int64", True, name=name, version=1), raw)

    sign = -1 if expected.startswith("-") else 1
    hours, minutes, seconds = expected.lstrip("-").split(":")
    want = sign * timedelta(hours=int(hours), minutes=int(minutes), seconds=float(seconds))
    assert column_type(event) == pa.duration("us")
    assert event.row["t"] == want
    assert roundtrip(event)["t"] == want


@pytest.mark.parametrize(
    ("logical_type", "raw", "unit", "expected"),
    [
        ("Timestamp", 1795248000123, "ms", datetime(2026, 11, 21, 8, 0, 0, 123000)),
        ("MicroTimestamp", 1795248000123456, "us", datetime(2026, 11, 21, 8, 0, 0, 123456)),
        ("MicroTimestamp", -1, "us", datetime(1969, 12, 31, 23, 59, 59, 999999)),
        ("NanoTimestamp", 1795248000123456000, "ns", datetime(2026, 11, 21, 8, 0, 0, 123456)),
        ("MicroTimestamp", 253402300799999999, "us", datetime(9999, 12, 31, 23, 59, 59, 999999)),
    ],
)
def test_datetime_columns_are_naive_timestamps(logical_type, raw, unit, expected):
    """`logical_type`: the Connect name io.debezium.time.<logical_type>; `unit`: the timestamp
    unit of the column's Arrow type."""
    name = f"io.debezium.time.{logical_type}"
    event = one_column(_f("at", "int64", True, name=name, version=1), raw)

    assert column_type(event) == pa.timestamp(unit)
    assert event.row["at"] == expected
    assert event.row["at"].tzinfo is None
    assert roundtrip(event)["at"] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-21T08:00:00.123456Z", datetime(2026, 11, 21, 8, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-21T08:00:00Z", datetime(2026, 11, 21, 8, 0, tzinfo=UTC)),
        ("2026-11-21T08:00:00.12Z", datetime(2026, 11, 21, 8, 0, 0, 120000, tzinfo=UTC)),
        ("2026-11-21T10:00:00+02:00", datetime(2026, 11, 21, 8, 0, tzinfo=UTC)),
        ("1970-01-01T00:00:01Z", datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)),
    ],
)
def test_zoned_timestamp_is_utc_aware(text, expected):
    event = one_column(_f("ts", "string", True, name="io.debezium.time.ZonedTimestamp"), text)

    assert column_type(event) == pa.timestamp("us", tz="UTC")
    assert event.row["ts"] == expected
    assert event.row["ts"].tzinfo is UTC
    assert roundtrip(event)["ts"] == expected


def _bits(length: int) -> dict[str, Any]:
    return _f(
        "b",
        "bytes",
        True,
        name="io.debezium.data.Bits",
        version=1,
        parameters={"length": str(length)},
    )


@pytest.mark.parametrize(
    ("length", "debezium", "mysql"),
    [
        # BIT(64) b'1000...0001': HEX() at the source is 8000000000000001.
        (64, b"\x01\x00\x00\x00\x00\x00\x00\x80", bytes.fromhex("8000000000000001")),
        (64, bytes.fromhex("0807060504030201"), bytes.fromhex("0102030405060708")),
        (5, b"\x16", b"\x16"),  # b'10110': one byte, nothing to reverse
        (16, b"\x02\x01", b"\x01\x02"),
        (12, b"\x01", b"\x00\x01"),  # a short array is padded to ceil(n/8) bytes
        (16, b"\x01\x00\x00", b"\x00\x01"),  # zero high bytes beyond the width are dropped
    ],
)
def test_bits_are_decoded_to_mysql_byte_order(length, debezium, mysql):
    event = one_column(_bits(length), b64(debezium))

    assert column_type(event) == pa.binary()
    assert event.row["b"] == mysql
    assert roundtrip(event)["b"] == mysql


def test_bits_wider_than_their_column_are_refused():
    with pytest.raises(DecodeError, match=r"field 'b'.*do not fit BIT\(8\)"):
        one_column(_bits(8), b64(b"\x01\x02"))


def test_bits_without_a_length_are_refused():
    column = _f("b", "bytes", True, name="io.debezium.data.Bits", parameters={})
    with pytest.raises(DecodeError, match="no integer 'length'"):
        one_column(column, b64(b"\x01"))


@pytest.mark.parametrize(
    ("days", "expected"),
    [(0, date(1970, 1, 1)), (20413, date(2025, 11, 21)), (-719162, date(1, 1, 1))],
)
def test_date(days, expected):
    event = one_column(_f("d", "int32", True, name="io.debezium.time.Date", version=1), days)

    assert column_type(event) == pa.date32()
    assert event.row["d"] == expected
    assert roundtrip(event)["d"] == expected


@pytest.mark.parametrize(
    ("column", "raw", "arrow_type", "expected"),
    [
        (_f("c", "bytes", True), b64(b"\x00\xffbin"), pa.binary(), b"\x00\xffbin"),
        (
            _f("c", "bytes", True, name="io.debezium.data.Bits", parameters={"length": "12"}),
            b64(b"\x0f\x01"),  # little-endian from Debezium
            pa.binary(),
            b"\x01\x0f",  # MySQL's order
        ),
        (_f("c", "int32", True, name="io.debezium.time.Year", version=1), 2026, pa.int32(), 2026),
        (
            _f("c", "string", True, name="io.debezium.data.Json"),
            '{"a":[1]}',
            pa.string(),
            '{"a":[1]}',
        ),
        (
            _f("c", "string", True, name="io.debezium.data.EnumSet", parameters={"allowed": "a,b"}),
            "a,b",
            pa.string(),
            "a,b",
        ),
        (_f("c", "string", True, name="io.debezium.some.Future"), "x", pa.string(), "x"),
        (_f("c", "int64", True), -(2**63), pa.int64(), -(2**63)),
        (
            {
                "type": "struct",
                "fields": [_f("wkb", "bytes"), _f("srid", "int32", True)],
                "optional": True,
                "name": "io.debezium.data.geometry.Point",
                "field": "c",
            },
            {"wkb": "AQE=", "srid": None},
            pa.string(),
            '{"wkb":"AQE=","srid":null}',
        ),
        (
            {
                "type": "array",
                "items": {"type": "int32", "optional": False},
                "optional": True,
                "field": "c",
            },
            [1, 2],
            pa.string(),
            "[1,2]",
        ),
    ],
)
def test_other_types(column, raw, arrow_type, expected):
    event = one_column(column, raw)

    assert column_type(event) == arrow_type
    assert event.row["c"] == expected
    assert roundtrip(event)["c"] == expected


def test_all_optional_columns_null():
    nullable = [c for c in ORDER_COLUMNS if c["optional"]]
    row = order_row(**{c["field"]: None for c in nullable})
    event = decode(key_bytes(), value_bytes("c", None, row))

    assert all(event.row[c["field"]] is None for c in nullable)
    assert roundtrip(event) == event.row


def test_arrow_schema_for_a_struct_schema():
    schema = arrow_schema_for(envelope_schema(ORDER_COLUMNS)["fields"][1])

    assert schema.equals(EXPECTED_ORDER_SCHEMA)


# -- schema cache -------------------------------------------------------------------------------


def test_records_with_the_same_schema_share_one_arrow_schema():
    first = decode(key_bytes(1), value_bytes("c", None, order_row(id=1)))
    second = decode(key_bytes(2), value_bytes("u", order_row(id=2), order_row(id=2)))

    assert first.row_schema is second.row_schema
    assert second.row["id"] == 2


def test_a_new_schema_version_gets_its_own_arrow_schema():
    first = decode(key_bytes(), value_bytes("c", None, order_row()))
    columns = [*ORDER_COLUMNS, _f("coupon", "string", True)]
    second = decode(
        key_bytes(), value_bytes("c", None, {**order_row(), "coupon": "X"}, columns=columns)
    )

    assert "coupon" not in first.row_schema.names
    assert second.row_schema.names[-1] == "coupon"
    assert second.row["coupon"] == "X"


def test_pretty_printed_json_is_decoded_too():
    document = json.loads(value_bytes("c", None, order_row()))
    event = decode(key_bytes(), json.dumps(document, indent=2).encode())

    assert event.row == DECODED_ORDER


def test_payload_marker_inside_the_schema_does_not_confuse_the_decoder():
    # A parameter named "payload" puts `,"payload":` inside the schema text.
    column = _f("c", "string", True, parameters={"a": "b", "payload": "x"})
    columns = [_f("id", "int64"), column]
    raw = value_bytes("c", None, {"id": 1, "c": "ok"}, columns=columns)
    assert raw.find(b',"payload":') < raw.find(b'"source"')

    for _ in range(2):  # first compiles the schema, second must not reuse a truncated slice
        event = decode(key_bytes(1), raw)
        assert event.row == {"id": 1, "c": "ok"}


def test_a_column_named_payload_is_fine():
    columns = [_f("id", "int64"), _f("payload", "string", True)]
    event = decode(key_bytes(1), value_bytes("c", None, {"id": 1, "payload": "p"}, columns=columns))

    assert event.row == {"id": 1, "payload": "p"}


# -- bad input ------------------------------------------------------------------------------------


def test_not_json():
    with pytest.raises(DecodeError, match="value is not valid JSON"):
        decode(key_bytes(), b"\x00\x00\x00\x00\x01garbage")


def test_schemaless_json_is_not_an_envelope():
    with pytest.raises(DecodeError, match=r"schemas.enable=true"):
        decode(key_bytes(), dumps({"before": None, "after": {"id": 1}, "op": "c"}))


def test_schema_that_is_not_a_struct():
    with pytest.raises(DecodeError, match="not a Connect struct"):
        decode(
            key_bytes(), dumps({"schema": {"type": "string", "optional": False}, "payload": "x"})
        )


def test_envelope_schema_without_op_field():
    schema = envelope_schema(ORDER_COLUMNS)
    schema["fields"] = [f for f in schema["fields"] if f["field"] != "op"]
    with pytest.raises(DecodeError, match="no 'op' field"):
        decode(key_bytes(), dumps({"schema": schema, "payload": {}}))


def test_envelope_schema_without_source_field():
    schema = envelope_schema(ORDER_COLUMNS)
    schema["fields"] = [f for f in schema["fields"] if f["field"] != "source"]
    with pytest.raises(DecodeError, match="no 'source' field"):
        decode(key_bytes(), dumps({"schema": schema, "payload": {}}))


def _mutated_payload(mutate) -> bytes:
    document = json.loads(value_bytes("c", None, order_row()))
    mutate(document["payload"])
    return dumps(document)


def test_payload_without_op():
    raw = _mutated_payload(lambda p: p.pop("op"))
    with pytest.raises(DecodeError, match="no 'op'") as info:
        decode(key_bytes(), raw)
    assert not isinstance(info.value, SchemaChangeRecord)


def test_payload_without_source():
    with pytest.raises(DecodeError, match="no 'source'"):
        decode(key_bytes(), _mutated_payload(lambda p: p.pop("source")))


def test_source_without_table():
    with pytest.raises(DecodeError, match="'source' lacks 'db'/'table'"):
        decode(key_bytes(), _mutated_payload(lambda p: p["source"].update(table=None)))


def test_unknown_op():
    with pytest.raises(DecodeError, match="unknown op 'x'"):
        decode(key_bytes(), _mutated_payload(lambda p: p.update(op="x")))


def test_truncate_is_an_event_without_a_row_and_with_its_source_position():
    # Debezium sends a TRUNCATE with a null key and neither before nor after image.
    event = decode(None, value_bytes("t", None, None))

    assert (event.table, event.op, event.row) == ("shop.orders", "t", {})
    assert event.is_truncate and not event.is_tombstone
    assert event.primary_key == ()
    assert event.row_schema.names == [c["field"] for c in ORDER_COLUMNS]
    assert event.source == source_position(source())
    assert event.captured_ts_ms == 1795248000456
    # In bronze: every table column null, full provenance.
    table = pa.Table.from_pylist([event.row], schema=event.row_schema)
    assert all(v is None for v in table.to_pylist()[0].values())


@pytest.mark.parametrize("missing", ["file", "pos"])
def test_truncate_without_a_binlog_position_is_refused(missing):
    # Readers of old bronze take op "t" without a position for a tombstone: never write one.
    raw = _mutated_payload(
        lambda p: p.update(op="t", after=None) or p["source"].update({missing: None})
    )
    with pytest.raises(DecodeError, match=r"TRUNCATE .* has no binlog position"):
        decode(None, raw)


def test_tombstone_op_is_not_a_letter_debezium_uses():
    assert TOMBSTONE not in OPS and TRUNCATE in OPS and LEGACY_TOMBSTONE == TRUNCATE


def test_null_image_for_op():
    with pytest.raises(DecodeError, match="op 'c' has a null 'after' image"):
        decode(key_bytes(), _mutated_payload(lambda p: p.update(after=None)))


def test_payload_missing_a_schema_field():
    with pytest.raises(DecodeError, match=r"missing fields \['note'\]"):
        decode(key_bytes(), _mutated_payload(lambda p: p["after"].pop("note")))


def test_payload_with_a_field_not_in_schema():
    raw = _mutated_payload(lambda p: p["after"].update(surprise=1))
    with pytest.raises(DecodeError, match=r"fields not in schema \['surprise'\]"):
        decode(key_bytes(), raw)


def test_null_in_required_column():
    raw = _mutated_payload(lambda p: p["after"].update(customer_id=None))
    with pytest.raises(DecodeError, match="'customer_id' is null but not optional"):
        decode(key_bytes(), raw)


def test_bad_base64_decimal_names_the_field():
    raw = _mutated_payload(lambda p: p["after"].update(total="***"))
    with pytest.raises(DecodeError, match="field 'total': cannot convert"):
        decode(key_bytes(), raw)


def test_bad_zoned_timestamp_names_the_field():
    raw = _mutated_payload(lambda p: p["after"].update(updated_at="yesterday"))
    with pytest.raises(DecodeError, match="field 'updated_at'"):
        decode(key_bytes(), raw)


def test_decimal_with_bad_parameters():
    column = _f(
        "c",
        "bytes",
        True,
        name="org.apache.kafka.connect.data.Decimal",
        parameters={"scale": "two"},
    )
    with pytest.raises(DecodeError, match="Decimal parameters"):
        one_column(column, unscaled(1))


def test_unknown_connect_type():
    with pytest.raises(DecodeError, match="unknown Connect schema type 'int128'"):
        one_column(_f("c", "int128", True), 1)


def test_neither_key_nor_value_is_the_tombstone_of_a_keyless_table():
    # Debezium sends it after a delete in a table without a primary key (seen on MariaDB).
    event = decode(None, None)
    assert (event.table, event.op, event.row, event.primary_key) == ("shop.orders", "x", {}, ())
    assert len(event.row_schema) == 0 and event.source is None


def test_tombstone_on_a_topic_outside_the_prefix():
    with pytest.raises(DecodeError, match=r"is not <binlake>.<db>.<table>"):
        decode(key_bytes(), None, topic="other.shop.orders")


def test_key_that_is_not_json():
    with pytest.raises(DecodeError, match="key is not valid JSON"):
        decode(b"{nope", value_bytes("c", None, order_row()))


def test_value_that_is_not_bytes():
    with pytest.raises(DecodeError, match="expected bytes"):
        decode(key_bytes(), 42)  # type: ignore[arg-type]


def test_decode_error_reason_is_bare_so_callers_can_add_location():
    with pytest.raises(DecodeError) as info:
        decode(b"{nope", None)
    located = DecodeError(info.value.reason, topic=TOPIC, partition=0, offset=17)
    assert str(located) == f"{info.value.reason} at binlake.shop.orders[0]@17"
    assert "at " not in info.value.reason

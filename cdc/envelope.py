"""Decoding of Debezium change records into typed rows with an Arrow schema.

Records come from Kafka Connect's JsonConverter with `schemas.enable=true`: each key and value is
`{"schema": <Connect schema>, "payload": <data>}`. The Connect schema (type, logical `name`,
`parameters`) decides both the Arrow type of a column and how its JSON value becomes a Python
value that `pa.Table.from_pylist(rows, schema=event.row_schema)` accepts.

Per-record cost matters (the bronze writer aims at 100k events/s), so the work that depends only
on a schema is done once per distinct schema and cached: the schema text is sliced out of the
raw bytes and used as the cache key, which means a record whose schema was seen before costs one
parse of its payload plus the few conversions its columns actually need. Payloads are parsed
with orjson (about 3x faster than `json`); whatever orjson would parse differently or refuses,
and any record that fails, goes through `json` again, so what is accepted, every value and every
error message stay those of `json` (see "the orjson fast path" below).
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from operator import itemgetter
from typing import Any

import orjson
import pyarrow as pa

from binlake.errors import DecodeError

from .column_defaults import (
    CONNECT_DEFAULT_UNKNOWN,
    DEFAULT_KEY,
    DEFAULT_UNKNOWN_KEY,
    encode_default,
)

__all__ = [
    "LEGACY_TOMBSTONE",
    "OPS",
    "TOMBSTONE",
    "TRUNCATE",
    "ChangeEvent",
    "SchemaChangeRecord",
    "SourcePosition",
    "arrow_schema_for",
    "clear_schema_cache",
    "decode_change",
    "field_codec",
    "source_position",
    "table_of_topic",
]

# Debezium's ops: create, update, delete, snapshot read, and TRUNCATE TABLE.
OPS = ("c", "u", "d", "r", "t")
TRUNCATE = "t"
# binlake's own op for a Kafka tombstone (a record with a null value), which Debezium gives no
# op. Not a letter Debezium uses (c, u, d, r, t, m): "x" as in "crossed out".
TOMBSTONE = "x"
# Bronze files written before TRUNCATE was captured marked tombstones with "t". Readers tell the
# two apart by the source position: a tombstone has none, a TRUNCATE always has its binlog file
# and position (see `binlake.silver.logic.is_tombstone`).
LEGACY_TOMBSTONE = "t"

Converter = Callable[[Any], Any]


class SchemaChangeRecord(DecodeError):
    """A DDL record from the schema-change topic (`<prefix>`), not a change to a table row.

    Callers skip these (or archive them); they are not bad data.
    """


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where in the source a change happened (Debezium's `source` block)."""

    file: str | None  # binlog file name
    pos: int | None  # binlog position of the event
    row: int | None  # row number within the binlog event
    ts_ms: int  # source commit time (epoch ms; whole seconds on MariaDB)
    snapshot: str | None  # "false" when streaming; "true"/"first"/"last"/... in a snapshot
    db: str
    table: str
    server_id: int | None
    gtid: str | None


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One decoded change: the row image, its Arrow schema, key names and source position."""

    table: str  # "<db>.<table>"
    op: str  # "c", "u", "d", "r", "t" (TRUNCATE), or TOMBSTONE ("x")
    row: dict[str, Any]  # after-image (c/u/r), before-image (d), key fields (x), nothing (t)
    row_schema: pa.Schema  # of `row`'s columns, in Debezium field order
    primary_key: tuple[str, ...]  # key field names; empty if the table has no key
    source: SourcePosition | None  # None only for tombstones
    captured_ts_ms: int | None  # envelope ts_ms: when Debezium processed the change

    @property
    def is_tombstone(self) -> bool:
        return self.op == TOMBSTONE

    @property
    def is_truncate(self) -> bool:
        return self.op == TRUNCATE


# Frozen dataclasses set each field through `object.__setattr__` in `__init__`; these build the
# same instances (same class, fields, equality, hash, immutability) about twice as fast by
# setting the slots through their descriptors. Keep them in step with the field lists above.
_SOURCE_SLOTS = tuple(vars(SourcePosition)[f.name].__set__ for f in fields(SourcePosition))
_EVENT_SLOTS = tuple(vars(ChangeEvent)[f.name].__set__ for f in fields(ChangeEvent))
assert [f.name for f in fields(SourcePosition)] == [
    "file",
    "pos",
    "row",
    "ts_ms",
    "snapshot",
    "db",
    "table",
    "server_id",
    "gtid",
]
assert [f.name for f in fields(ChangeEvent)] == [
    "table",
    "op",
    "row",
    "row_schema",
    "primary_key",
    "source",
    "captured_ts_ms",
]


def _new_source(
    file: Any,
    pos: Any,
    row: Any,
    ts_ms: int,
    snapshot: Any,
    db: str,
    table: str,
    server_id: Any,
    gtid: Any,
    _new: Callable[[type], Any] = object.__new__,
    _slots: tuple[Callable[[Any, Any], None], ...] = _SOURCE_SLOTS,
) -> SourcePosition:
    o = _new(SourcePosition)
    s0, s1, s2, s3, s4, s5, s6, s7, s8 = _slots
    s0(o, file)
    s1(o, pos)
    s2(o, row)
    s3(o, ts_ms)
    s4(o, snapshot)
    s5(o, db)
    s6(o, table)
    s7(o, server_id)
    s8(o, gtid)
    return o


def _new_event(
    table: str,
    op: str,
    row: dict[str, Any],
    row_schema: pa.Schema,
    primary_key: tuple[str, ...],
    source: SourcePosition | None,
    captured_ts_ms: int | None,
    _new: Callable[[type], Any] = object.__new__,
    _slots: tuple[Callable[[Any, Any], None], ...] = _EVENT_SLOTS,
) -> ChangeEvent:
    o = _new(ChangeEvent)
    s0, s1, s2, s3, s4, s5, s6 = _slots
    s0(o, table)
    s1(o, op)
    s2(o, row)
    s3(o, row_schema)
    s4(o, primary_key)
    s5(o, source)
    s6(o, captured_ts_ms)
    return o


# --------------------------------------------------------------------------------------------
# Connect schema -> Arrow type + value converter
# --------------------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)

_PRIMITIVES: dict[str, pa.DataType] = {
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    # Kafka Connect's JsonConverter spells FLOAT32 and FLOAT64 as "float" and "double".
    "float": pa.float32(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
}


def _b64(value: str) -> bytes:
    return binascii.a2b_base64(value, strict_mode=True)


def _bytes_converter(base64_bytes: bool) -> Converter | None:
    # JSON carries bytes as base64 text; Avro already yields bytes.
    return _b64 if base64_bytes else None


def _decimal_codec(schema: Mapping[str, Any], base64_bytes: bool) -> tuple[pa.DataType, Converter]:
    params = schema.get("parameters") or {}
    try:
        scale = int(params.get("scale", 0))
        precision = int(params.get("connect.decimal.precision", 0)) or max(38, scale)
    except (TypeError, ValueError):
        raise DecodeError(f"Decimal parameters {params!r} are not integers") from None
    arrow_type = (
        pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
    )
    # scaleb in a context of maximal precision keeps every digit (the default context would
    # round to 28) and gives the same value and exponent as parsing f"{unscaled}E{-scale}".
    shift = -scale

    def convert(value: Any) -> Decimal:
        if isinstance(value, str):
            raw = binascii.a2b_base64(value, strict_mode=True) if base64_bytes else value
        elif isinstance(value, bytes):
            raw = value
        elif isinstance(value, int | float):  # JsonConverter with decimal.format=NUMERIC
            return Decimal(str(value))
        else:
            raise TypeError(f"expected base64 text or bytes, got {type(value).__name__}")
        if isinstance(raw, str):
            return Decimal(raw)
        return Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(shift, _EXACT)

    return arrow_type, convert


def _bits_codec(schema: Mapping[str, Any], base64_bytes: bool) -> tuple[pa.DataType, Converter]:
    """BIT(n > 1) as MySQL shows it: big-endian, ceil(n/8) bytes (BIT(1) comes as a boolean).

    Debezium's `io.debezium.data.Bits` is little-endian (Java's `BitSet.toByteArray`), so
    b'1000...0001' in a BIT(64) arrives as 01 00 .. 00 80. Bronze stores the bytes already in
    MySQL's order (0x8000000000000001, what `HEX(col)` shows), so every reader of bronze,
    silver and gold sees the source's value; the width comes from the schema's `length`.
    """
    params = schema.get("parameters") or {}
    try:
        bits = int(params["length"])
    except (KeyError, TypeError, ValueError):
        raise DecodeError(
            f"io.debezium.data.Bits column has no integer 'length' parameter: {params!r}"
        ) from None
    width = (bits + 7) // 8

    def convert(value: Any) -> bytes:
        if isinstance(value, str) and base64_bytes:
            raw = _b64(value)
        elif isinstance(value, bytes | bytearray):
            raw = bytes(value)
        else:
            raise TypeError(f"expected BIT({bits}) bytes, got {type(value).__name__}")
        if len(raw) > width:
            if any(raw[width:]):  # little-endian: the bytes beyond the width are the high ones
                raise ValueError(f"{len(raw)} bytes do not fit BIT({bits})")
            raw = raw[:width]
        return raw[::-1].rjust(width, b"\0")

    return pa.binary(), convert


def _date(days: int) -> date:
    return date.fromordinal(_EPOCH_ORDINAL + days)


# timedelta(days, seconds, microseconds, milliseconds) by position: cheaper than keywords.


def _time_ms(ms: int) -> timedelta:
    return timedelta(0, 0, 0, ms)


def _time_us(us: int) -> timedelta:
    return timedelta(0, 0, us)


def _time_ns(ns: int) -> timedelta:
    return timedelta(0, 0, ns // 1000)


def _timestamp_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(0, 0, 0, ms)


def _timestamp_us(us: int) -> datetime:
    return _EPOCH + timedelta(0, 0, us)


def _timestamp_ns(ns: int) -> datetime:
    # Python datetimes stop at microseconds; MySQL DATETIME does too, so nothing is lost.
    return _EPOCH + timedelta(0, 0, ns // 1000)


def _zoned_timestamp(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("ZonedTimestamp without a UTC offset")
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return binascii.b2a_base64(value, newline=False).decode("ascii")
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=_json_default, ensure_ascii=False)


def _fixed(arrow_type: pa.DataType, convert: Converter | None):
    return lambda schema, base64_bytes: (arrow_type, convert)


_DURATION_US = pa.duration("us")

# Logical types by Connect schema `name`. MySQL TIME maps to a duration because it may be
# negative or exceed 24 hours; DATETIME has no time zone so its timestamps stay naive.
_LOGICAL: dict[str, Callable[[Mapping[str, Any], bool], tuple[pa.DataType, Converter | None]]] = {
    "org.apache.kafka.connect.data.Decimal": _decimal_codec,
    "io.debezium.time.Date": _fixed(pa.date32(), _date),
    "org.apache.kafka.connect.data.Date": _fixed(pa.date32(), _date),
    "io.debezium.time.Time": _fixed(_DURATION_US, _time_ms),
    "org.apache.kafka.connect.data.Time": _fixed(_DURATION_US, _time_ms),
    "io.debezium.time.MicroTime": _fixed(_DURATION_US, _time_us),
    "io.debezium.time.NanoTime": _fixed(_DURATION_US, _time_ns),
    "io.debezium.time.Timestamp": _fixed(pa.timestamp("ms"), _timestamp_ms),
    "org.apache.kafka.connect.data.Timestamp": _fixed(pa.timestamp("ms"), _timestamp_ms),
    "io.debezium.time.MicroTimestamp": _fixed(pa.timestamp("us"), _timestamp_us),
    "io.debezium.time.NanoTimestamp": _fixed(pa.timestamp("ns"), _timestamp_ns),
    "io.debezium.time.ZonedTimestamp": _fixed(pa.timestamp("us", tz="UTC"), _zoned_timestamp),
    "io.debezium.time.Year": _fixed(pa.int32(), None),
    "io.debezium.data.Json": _fixed(pa.string(), None),
    "io.debezium.data.Enum": _fixed(pa.string(), None),
    "io.debezium.data.EnumSet": _fixed(pa.string(), None),
    "io.debezium.data.Bits": lambda schema, b64: _bits_codec(schema, b64),
}


def field_codec(
    schema: Mapping[str, Any], *, base64_bytes: bool = True
) -> tuple[pa.DataType, Converter | None]:
    """Arrow type and value converter (None: the value is used as it is) for a Connect schema."""
    logical = _LOGICAL.get(schema.get("name") or "")
    if logical is not None:
        return logical(schema, base64_bytes)
    kind = schema.get("type")
    primitive = _PRIMITIVES.get(kind)  # type: ignore[arg-type]
    if primitive is not None:
        return primitive, None
    if kind == "bytes":
        return pa.binary(), _bytes_converter(base64_bytes)
    if kind in ("struct", "array", "map"):
        return pa.string(), _to_json
    raise DecodeError(f"unknown Connect schema type {kind!r} (name {schema.get('name')!r})")


def _default_metadata(
    field: Mapping[str, Any],
    name: str,
    arrow_type: pa.DataType,
    convert: Converter | None,
    what: str,
) -> dict[bytes, bytes] | None:
    """Arrow field metadata carrying the column's default (`cdc.column_defaults`), if any.

    Computed once per schema (plans are cached), so records pay nothing for it.
    """
    if field.get(CONNECT_DEFAULT_UNKNOWN):
        return {DEFAULT_UNKNOWN_KEY: b"true"}
    default = field.get("default")
    if default is None and field.get("optional", False):
        return (
            None  # a nullable column without a default: rows existing when it was added hold NULL
        )
    try:
        if default is None:
            value = _implicit_default(field, convert)
            if value is _UNKNOWN:
                return {DEFAULT_UNKNOWN_KEY: b"true"}
        elif _is_epoch_timestamp_default(field, default):
            # DEFAULT CURRENT_TIMESTAMP reaches the schema as the epoch, while MySQL gives the
            # rows existing at the ALTER its time: not a value silver can fill in.
            return {DEFAULT_UNKNOWN_KEY: b"true"}
        else:
            value = default if convert is None else convert(default)
        return {DEFAULT_KEY: encode_default(value, arrow_type)}
    except (ValueError, TypeError, OverflowError, ArithmeticError, pa.ArrowException) as exc:
        raise DecodeError(
            f"{what} schema: default {_short(default)} of column {name!r} does not fit its "
            f"type {arrow_type}: {exc}"
        ) from None


_UNKNOWN: Any = object()
_EPOCH_TEXTS = frozenset({"1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z"})


def _is_epoch_timestamp_default(field: Mapping[str, Any], default: Any) -> bool:
    """A DATETIME/TIMESTAMP default Debezium gives as the epoch (what it sends for
    CURRENT_TIMESTAMP, and for a zero date)."""
    name = field.get("name")
    if name == "io.debezium.time.ZonedTimestamp":
        return default in _EPOCH_TEXTS
    return name in _TIMESTAMP_NAMES and default == 0


_TIMESTAMP_NAMES = frozenset(
    {
        "io.debezium.time.Timestamp",
        "org.apache.kafka.connect.data.Timestamp",
        "io.debezium.time.MicroTimestamp",
        "io.debezium.time.NanoTimestamp",
    }
)
# Debezium sends a zero date or time of a NOT NULL column as the epoch (0): seen for DATETIME.
_ZERO_IS_EPOCH = frozenset(
    {
        "io.debezium.time.Date",
        "org.apache.kafka.connect.data.Date",
        "io.debezium.time.Timestamp",
        "org.apache.kafka.connect.data.Timestamp",
        "io.debezium.time.MicroTimestamp",
        "io.debezium.time.NanoTimestamp",
        "io.debezium.time.Time",
        "org.apache.kafka.connect.data.Time",
        "io.debezium.time.MicroTime",
        "io.debezium.time.NanoTime",
    }
)
_ZERO_OF_TYPE = {
    "int8": 0,
    "int16": 0,
    "int32": 0,
    "int64": 0,
    "float32": 0.0,
    "float64": 0.0,
    "float": 0.0,
    "double": 0.0,
    "boolean": False,
    "string": "",
}


def _implicit_default(field: Mapping[str, Any], convert: Converter | None) -> Any:
    """MySQL's implicit default of a NOT NULL column declared without one, as Debezium would
    send it; `_UNKNOWN` where the Connect schema does not tell it.

    Debezium 3.0.7 sends no `default` for such a column, yet `ADD COLUMN c INT NOT NULL` gives
    every existing row 0 (strings '', ENUM its first value, DECIMAL 0, a zero date). Types whose
    implicit default depends on what the Connect schema does not carry (BINARY(n) pads to n zero
    bytes, BIT(n), YEAR, JSON, TIMESTAMP's automatic CURRENT_TIMESTAMP, spatial types) are
    unknown.
    """
    name = field.get("name") or ""
    if name == "io.debezium.data.Enum":
        allowed = str((field.get("parameters") or {}).get("allowed", ""))
        return allowed.split(",")[0] if allowed else _UNKNOWN
    if name == "io.debezium.data.EnumSet":
        return ""
    if name == "org.apache.kafka.connect.data.Decimal":
        scale = int((field.get("parameters") or {}).get("scale", 0))
        return Decimal(0).scaleb(-scale)
    if name in _ZERO_IS_EPOCH:
        return 0 if convert is None else convert(0)
    if name:
        return _UNKNOWN
    return _ZERO_OF_TYPE.get(field.get("type"), _UNKNOWN)  # type: ignore[arg-type]


class StructPlan:
    """Everything about one Connect struct schema that does not depend on a record's data."""

    __slots__ = (
        "_checks",
        "_converters",
        "_name_set",
        "_required",
        "arrow_schema",
        "connect_name",
        "names",
    )

    def __init__(self, schema: Mapping[str, Any], *, base64_bytes: bool = True, what: str):
        if not isinstance(schema, Mapping) or schema.get("type") != "struct":
            raise DecodeError(f"{what} schema is not a Connect struct")
        fields = schema.get("fields")
        if not isinstance(fields, list):
            raise DecodeError(f"{what} schema has no 'fields' list")
        names: list[str] = []
        arrow_fields: list[pa.Field] = []
        checks: list[tuple[str, Converter | None, bool]] = []
        for field in fields:
            name = field.get("field") if isinstance(field, Mapping) else None
            if not isinstance(name, str):
                raise DecodeError(f"{what} schema has a field without a 'field' name")
            optional = bool(field.get("optional", False))
            arrow_type, convert = field_codec(field, base64_bytes=base64_bytes)
            names.append(name)
            arrow_fields.append(
                pa.field(
                    name,
                    arrow_type,
                    nullable=optional,
                    metadata=_default_metadata(field, name, arrow_type, convert, what),
                )
            )
            # Only columns that need converting or must not be null are visited per record.
            if convert is not None or not optional:
                checks.append((name, convert, optional))
        if len(set(names)) != len(names):
            raise DecodeError(f"{what} schema repeats a field name: {names}")
        self.names = tuple(names)
        self._name_set = frozenset(names)
        self.arrow_schema = pa.schema(arrow_fields)
        self._checks = tuple(checks)
        # The fast path of `convert`: one C call fetches every required value (a None among
        # them sends the record to the exact checks below), then only columns with a
        # converter are visited.
        required = [name for name, _, optional in checks if not optional]
        self._required: Callable[[dict[str, Any]], Any] | None = None
        if len(required) == 1:
            self._required = itemgetter(required[0], required[0])  # always a tuple
        elif required:
            self._required = itemgetter(*required)
        self._converters = tuple((name, c) for name, c, _ in checks if c is not None)
        self.connect_name = schema.get("name")

    def convert(self, payload: Any, what: str) -> dict[str, Any]:
        """`payload` with its values converted in place; DecodeError if it does not fit."""
        if type(payload) is not dict:
            raise DecodeError(f"{what} is {type(payload).__name__}, expected an object")
        if payload.keys() != self._name_set:
            missing = sorted(self._name_set - payload.keys())
            extra = sorted(payload.keys() - self._name_set)
            raise DecodeError(
                f"{what} does not match its schema: missing fields {missing}, "
                f"fields not in schema {extra}"
            )
        required = self._required
        if required is not None and None in required(payload):
            return self._convert_checked(payload, what)  # raises, naming the first problem
        # No required value is null, so the first converter to fail (in field order) is the
        # first problem `_convert_checked` would report: the error is the same.
        name, value = "", None
        try:
            for name, convert in self._converters:
                value = payload[name]
                if value is not None:
                    payload[name] = convert(value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise DecodeError(
                f"{what} field {name!r}: cannot convert {_short(value)}: {exc}"
            ) from None
        return payload

    def _convert_checked(self, payload: dict[str, Any], what: str) -> dict[str, Any]:
        """`convert` column by column in field order, checking nulls and conversions."""
        name, value = "", None
        try:
            for name, convert, optional in self._checks:
                value = payload[name]
                if value is None:
                    if not optional:
                        raise DecodeError(f"{what} field {name!r} is null but not optional")
                elif convert is not None:
                    payload[name] = convert(value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise DecodeError(
                f"{what} field {name!r}: cannot convert {_short(value)}: {exc}"
            ) from None
        return payload


def arrow_schema_for(struct_schema: Mapping[str, Any]) -> pa.Schema:
    """Arrow schema of a Connect struct schema (as found in a JsonConverter record)."""
    return StructPlan(struct_schema, what="struct").arrow_schema


# --------------------------------------------------------------------------------------------
# Envelope plans
# --------------------------------------------------------------------------------------------

_IMAGE_OF_OP = {"c": "after", "u": "after", "r": "after", "d": "before"}
_WHAT_OF_IMAGE = {"after": "'after'", "before": "'before'"}  # for error messages


class KeyPlan:
    """A record key's schema: its field names are the table's primary key."""

    __slots__ = ("names", "struct")

    def __init__(self, schema: Mapping[str, Any], *, base64_bytes: bool = True):
        self.struct = StructPlan(schema, base64_bytes=base64_bytes, what="key")
        self.names = self.struct.names


class ValuePlan:
    """A record value's schema: a change envelope, or a schema-change (DDL) record."""

    __slots__ = ("connect_name", "is_schema_change", "row")

    def __init__(self, schema: Mapping[str, Any], *, base64_bytes: bool = True):
        if not isinstance(schema, Mapping) or schema.get("type") != "struct":
            raise DecodeError("value schema is not a Connect struct, so not a Debezium envelope")
        self.connect_name = schema.get("name") or ""
        fields = {
            field.get("field"): field
            for field in schema.get("fields") or ()
            if isinstance(field, Mapping)
        }
        self.is_schema_change = "op" not in fields and (
            self.connect_name.endswith(".SchemaChangeValue") or "ddl" in fields
        )
        self.row: StructPlan | None = None
        if self.is_schema_change:
            return
        if "op" not in fields:
            raise DecodeError("value schema has no 'op' field: not a Debezium change envelope")
        if "source" not in fields:
            raise DecodeError("value schema has no 'source' field: not a Debezium change envelope")
        image = fields.get("after") or fields.get("before")
        if image is None:
            raise DecodeError("value schema has neither 'after' nor 'before'")
        self.row = StructPlan(image, base64_bytes=base64_bytes, what="row")


class _PlanCache:
    """Compiled plans keyed by schema text, plus the last one used.

    Records of one partition nearly always repeat the previous record's schema; checking that
    with one `startswith` (a memcmp) skips searching, slicing and hashing a multi-KB schema.
    """

    __slots__ = ("_compile", "last_plan", "last_text", "plans")

    # Bounded so a stream of ever-new schemas cannot grow memory without limit.
    MAX_PLANS = 2048

    def __init__(self, compile_plan: Callable[[Mapping[str, Any]], Any]):
        self._compile = compile_plan
        self.plans: dict[bytes, Any] = {}
        self.last_text: bytes | None = None
        self.last_plan: Any = None

    def clear(self) -> None:
        self.plans.clear()
        self.last_text = self.last_plan = None

    def get(self, schema_text: bytes) -> Any:
        plan = self.plans.get(schema_text)
        if plan is not None:
            self.last_text, self.last_plan = schema_text, plan
        return plan

    def compile(self, schema_text: bytes, schema: Mapping[str, Any]) -> Any:
        plan = self._compile(schema)
        if len(self.plans) >= self.MAX_PLANS:
            self.plans.clear()
        self.plans[schema_text] = plan
        self.last_text, self.last_plan = schema_text, plan
        return plan


_VALUE_PLANS = _PlanCache(lambda schema: ValuePlan(schema))
_KEY_PLANS = _PlanCache(lambda schema: KeyPlan(schema))


def clear_schema_cache() -> None:
    """Forget every compiled schema (tests; a long-running process never needs to)."""
    _VALUE_PLANS.clear()
    _KEY_PLANS.clear()


_HEAD = b'{"schema":'
_SEPARATOR = b',"payload":'
_HEAD_LEN = len(_HEAD)
_SEPARATOR_LEN = len(_SEPARATOR)


def _parse(raw: bytes, what: str, cache: _PlanCache) -> tuple[Any, bytes | None]:
    """(plan, payload text) of a JsonConverter record; the payload is parsed by `_payload`.

    JsonConverter writes `{"schema":...,"payload":...}` compactly, so the schema text is the
    bytes before the first `,"payload":`. That slice is the cache key, and a record whose
    schema is cached needs only its payload parsed. A slice is only cached once it parsed as a
    whole JSON object: a `,"payload":` inside the schema would cut it mid-object (and such a
    fragment never parses), in which case the record is parsed in full instead. Likewise a
    cached schema text followed by `,"payload":` can only be the record's whole schema. A
    payload text of None means "parse the whole record".
    """
    if not raw.startswith(_HEAD) or not raw.endswith(b"}"):
        return _parse_whole(raw, what, cache)
    last = cache.last_text
    if last is not None and raw.startswith(last, _HEAD_LEN):
        cut = _HEAD_LEN + len(last)
        if raw.startswith(_SEPARATOR, cut):
            return cache.last_plan, raw[cut + _SEPARATOR_LEN : -1]
    cut = raw.find(_SEPARATOR, _HEAD_LEN)
    if cut < 0:
        return _parse_whole(raw, what, cache)
    schema_text = raw[_HEAD_LEN:cut]
    plan = cache.get(schema_text)
    if plan is None:
        try:
            schema = json.loads(schema_text)
        except ValueError:
            return _parse_whole(raw, what, cache)
        if not isinstance(schema, dict):
            return _parse_whole(raw, what, cache)
        plan = cache.compile(schema_text, schema)
    return plan, raw[cut + _SEPARATOR_LEN : -1]


def _parse_whole(raw: bytes, what: str, cache: _PlanCache) -> tuple[Any, None]:
    schema = _document(raw, what)["schema"]
    schema_text = json.dumps(schema, separators=(",", ":")).encode()
    plan = cache.get(schema_text)
    if plan is None:
        plan = cache.compile(schema_text, schema)
    return plan, None


def _document(raw: bytes, what: str) -> dict[str, Any]:
    """The whole record parsed and checked to be a `{"schema": {...}, "payload": ...}` object."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or "schema" not in document or "payload" not in document:
        raise DecodeError(
            f"{what} is not a Connect JSON envelope with 'schema' and 'payload' "
            "(is the converter's schemas.enable=true?)"
        )
    if not isinstance(document["schema"], dict):
        kind = type(document["schema"]).__name__
        raise DecodeError(f"{what} 'schema' is {kind}, expected an object")
    return document


def _payload(raw: bytes, text: bytes | None, what: str) -> Any:
    if text is not None:
        try:
            return json.loads(text)
        except (ValueError, UnicodeDecodeError):
            pass  # not the compact layout after all: parse the whole record for a clear error
    return _document(raw, what)["payload"]


# -- the orjson fast path ------------------------------------------------------------------
#
# orjson parses a payload about 3x faster than `json`, and gives the same objects for every
# document both accept, with one exception: an integer literal beyond 64 bits becomes a float
# (`json` keeps an exact int). Such a float has a magnitude of at least 2**63, so a payload
# whose values used by decoding (the row image, `source`, `ts_ms`) hold no float that large
# (nor NaN) decodes exactly as with `json`. Anything else (a document orjson refuses, a
# suspicious float, any error while decoding) goes through the `json` path, which stays the
# reference for what is accepted and for every error message.

_NOT_PARSED: Any = object()
_SAFE_TYPES = frozenset({int, str, bool, type(None)})
_BIG = float(2**63)


def _fast_payload(text: bytes | None) -> Any:
    """The payload parsed by orjson, or `_NOT_PARSED` if it must go the `json` way."""
    if text is None:
        return _NOT_PARSED
    try:
        payload = _orjson_loads(text)
    except ValueError:  # orjson.JSONDecodeError: lone surrogates, NaN, invalid UTF-8, ...
        return _NOT_PARSED
    if type(payload) is not dict:
        return _NOT_PARSED
    safe = _SAFE_TYPES.issuperset
    image = payload.get(_IMAGE_OF_OP.get(payload.get("op"), "after"))  # type: ignore[arg-type]
    source = payload.get("source")
    for part in (image, source):
        # The common case, only ints, strings, booleans and nulls, is checked in C.
        if type(part) is dict and not safe(map(type, part.values())) and _suspect(part.values()):
            return _NOT_PARSED
    if type(payload.get("ts_ms")) is float:
        return _NOT_PARSED
    return payload


def _suspect(values: Any) -> bool:
    """True if `values` (or containers among them) hold a float orjson may have made of a
    64-bit-overflowing integer literal."""
    for value in values:
        kind = type(value)
        if kind is float:
            if not -_BIG < value < _BIG:  # also true for NaN
                return True
        elif kind is dict:
            if _suspect(value.values()):
                return True
        elif kind is list and _suspect(value):
            return True
    return False


_orjson_loads = orjson.loads


def _as_bytes(data: Any, what: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str):
        return data.encode()
    raise DecodeError(f"{what} is {type(data).__name__}, expected bytes")


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


def table_of_topic(topic: str, topic_prefix: str) -> str:
    """`<db>.<table>` of a change topic `<prefix>.<db>.<table>`."""
    head = topic_prefix + "."
    if not topic.startswith(head) or topic.count(".", len(head)) != 1:
        raise DecodeError(f"topic {topic!r} is not <{topic_prefix}>.<db>.<table>")
    return topic[len(head) :]


def source_position(source: Any) -> SourcePosition:
    """The `source` block of an envelope payload as a SourcePosition."""
    if type(source) is not dict:
        raise DecodeError(f"'source' is {type(source).__name__}, expected an object")
    get = source.get
    db, table, ts_ms = get("db"), get("table"), get("ts_ms")
    if not isinstance(db, str) or not isinstance(table, str):
        raise DecodeError(f"'source' lacks 'db'/'table' (db={db!r}, table={table!r})")
    if not isinstance(ts_ms, int):
        raise DecodeError(f"'source.ts_ms' is {ts_ms!r}, expected epoch milliseconds")
    # file, pos, row, ts_ms, snapshot, db, table, server_id, gtid
    return _new_source(
        get("file"),
        get("pos"),
        get("row"),
        ts_ms,
        get("snapshot"),
        db,
        table,
        get("server_id"),
        get("gtid"),
    )


def event_from_payload(
    plan: ValuePlan, payload: Any, primary_key: tuple[str, ...], *, topic: str
) -> ChangeEvent:
    """The ChangeEvent of a decoded envelope payload (shared by the JSON and Avro paths)."""
    if plan.is_schema_change:
        raise SchemaChangeRecord(f"schema-change (DDL) record on topic {topic!r}, not a row change")
    if type(payload) is not dict:
        raise DecodeError(f"value payload is {type(payload).__name__}, expected an object")
    op = payload.get("op")
    image = _IMAGE_OF_OP.get(op)  # type: ignore[arg-type]
    if image is None:
        if op is None:
            raise DecodeError("value payload has no 'op'")
        if op == TRUNCATE:
            return _truncate_event(plan, payload, primary_key)
        raise DecodeError(f"unknown op {op!r} (expected one of c, u, d, r, t)")
    if "source" not in payload:
        raise DecodeError("value payload has no 'source'")
    source = source_position(payload["source"])
    data = payload.get(image)
    if data is None:
        raise DecodeError(f"op {op!r} has a null '{image}' image")
    row_plan = plan.row
    assert row_plan is not None  # a non-schema-change plan always has one
    row = row_plan.convert(data, _WHAT_OF_IMAGE[image])
    captured = payload.get("ts_ms")
    return _new_event(  # table, op, row, row_schema, primary_key, source, captured_ts_ms
        f"{source.db}.{source.table}",
        op,  # type: ignore[arg-type]
        row,
        row_plan.arrow_schema,
        primary_key,
        source,
        captured if isinstance(captured, int) else None,
    )


def _truncate_event(
    plan: ValuePlan, payload: dict[str, Any], primary_key: tuple[str, ...]
) -> ChangeEvent:
    """A TRUNCATE TABLE: no row image (every table column null in bronze), full provenance.

    Its source position is what silver truncates at, and what tells it apart from a tombstone
    in bronze files written before TRUNCATE was captured (those marked tombstones "t" and had
    no position): one without a binlog file and position is refused.
    """
    if "source" not in payload:
        raise DecodeError("TRUNCATE (op 't') has no 'source'")
    source = source_position(payload["source"])
    if not isinstance(source.file, str) or not isinstance(source.pos, int):
        raise DecodeError(
            f"TRUNCATE (op 't') of {source.db}.{source.table} has no binlog position "
            f"(source.file={source.file!r}, source.pos={source.pos!r})"
        )
    row_plan = plan.row
    assert row_plan is not None  # a non-schema-change plan always has one
    captured = payload.get("ts_ms")
    return _new_event(  # table, op, row, row_schema, primary_key, source, captured_ts_ms
        f"{source.db}.{source.table}",
        TRUNCATE,
        {},
        row_plan.arrow_schema,
        primary_key,
        source,
        captured if isinstance(captured, int) else None,
    )


def tombstone_from_key(
    plan: KeyPlan, key_payload: Any, *, topic: str, topic_prefix: str
) -> ChangeEvent:
    """The ChangeEvent of a tombstone (null value): key fields only, table from the topic."""
    if topic == topic_prefix:
        raise SchemaChangeRecord(f"null value on the schema-change topic {topic!r}")
    table = table_of_topic(topic, topic_prefix)
    row = plan.struct.convert(key_payload, "key")
    return ChangeEvent(
        table=table,
        op=TOMBSTONE,
        row=row,
        row_schema=plan.struct.arrow_schema,
        primary_key=plan.names,
        source=None,
        captured_ts_ms=None,
    )


_NO_COLUMNS = pa.schema([])


def keyless_tombstone(*, topic: str, topic_prefix: str) -> ChangeEvent:
    """The tombstone Debezium sends after a delete in a table without a primary key.

    It has neither key nor value. Whether it really follows such a delete is for the partition
    writer to decide: it is the only one that saw the record before.
    """
    if topic == topic_prefix:
        raise SchemaChangeRecord(f"null record on the schema-change topic {topic!r}")
    return ChangeEvent(
        table=table_of_topic(topic, topic_prefix),
        op=TOMBSTONE,
        row={},
        row_schema=_NO_COLUMNS,
        primary_key=(),
        source=None,
        captured_ts_ms=None,
    )


def decode_change(
    key: bytes | None, value: bytes | None, *, topic: str, topic_prefix: str
) -> ChangeEvent:
    """Decode one Kafka record written by Debezium through JsonConverter with schemas.

    Raises `SchemaChangeRecord` for DDL records and `DecodeError` (reason in `.reason`) for
    anything that is not a valid change event. Neither carries partition/offset: the caller
    knows them and can re-raise `DecodeError(err.reason, topic=..., partition=..., offset=...)`.
    """
    if value is None:
        if key is None:
            return keyless_tombstone(topic=topic, topic_prefix=topic_prefix)
        raw_key = _as_bytes(key, "key")
        key_plan, key_text = _parse(raw_key, "key", _KEY_PLANS)
        key_payload = _payload(raw_key, key_text, "key")
        return tombstone_from_key(key_plan, key_payload, topic=topic, topic_prefix=topic_prefix)

    raw_value = _as_bytes(value, "value")
    plan, text = _parse(raw_value, "value", _VALUE_PLANS)
    if plan.is_schema_change:
        raise SchemaChangeRecord(f"schema-change (DDL) record on topic {topic!r}, not a row change")
    payload = _fast_payload(text)
    if payload is not _NOT_PARSED:
        try:
            return event_from_payload(plan, payload, _primary_key(key), topic=topic)
        except Exception:  # noqa: BLE001, S110 - the `json` path below raises the reference error
            pass
    payload = _payload(raw_value, text, "value")
    return event_from_payload(plan, payload, _primary_key(key), topic=topic)


def _primary_key(key: bytes | None) -> tuple[str, ...]:
    if key is None:
        return ()
    # Only the key's schema is needed here (its field names); its payload is left unparsed.
    return _parse(_as_bytes(key, "key"), "key", _KEY_PLANS)[0].names


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""Connect schema -> Arrow: the column type and value converter of every Connect field type.

A Debezium record carries its Connect schema (type, logical `name`, `parameters`) with it. That
schema decides both the Arrow type of a column and how its raw value (JSON or Avro) becomes a
Python value that `pa.Table.from_pylist(rows, schema=...)` accepts. The work that depends only on
a schema is compiled once into a plan (`StructPlan`, `KeyPlan`, `ValuePlan`) and cached by the
decoders (`PlanCache`), so a record pays only for the conversions its columns actually need.
Column defaults travel as Arrow field metadata (`cdc.column_defaults`).
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from operator import itemgetter
from typing import Any

import pyarrow as pa

from binlake.errors import DecodeError

from .column_defaults import (
    CONNECT_DEFAULT_UNKNOWN,
    DEFAULT_KEY,
    DEFAULT_UNKNOWN_KEY,
    encode_default,
)

__all__ = [
    "Converter",
    "KeyPlan",
    "PlanCache",
    "StructPlan",
    "ValuePlan",
    "arrow_schema_for",
    "field_codec",
]

Converter = Callable[[Any], Any]

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
            raise _conversion_error(what, name, value, exc) from None
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
            raise _conversion_error(what, name, value, exc) from None
        return payload


def _conversion_error(what: str, name: str, value: Any, exc: Exception) -> DecodeError:
    return DecodeError(f"{what} field {name!r}: cannot convert {_short(value)}: {exc}")


def arrow_schema_for(struct_schema: Mapping[str, Any]) -> pa.Schema:
    """Arrow schema of a Connect struct schema (as found in a JsonConverter record)."""
    return StructPlan(struct_schema, what="struct").arrow_schema


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


class PlanCache:
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


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

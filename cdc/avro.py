"""Debezium records written by Confluent's AvroConverter, decoded into the same ChangeEvent.

Wire format: byte 0x00, a 4-byte big-endian schema id, then the Avro body without a header.
Writer schemas come from the registry (`GET /schemas/ids/<id>`) once per id and stay cached.

Debezium's AvroConverter keeps each field's Connect schema in Avro properties (`connect.name`,
`connect.parameters`, `connect.type`), so an Avro schema is translated back into the Connect
schema and the JSON path's type mapping (`cdc.connect_schema`) is reused unchanged. Avro logical
types are removed before reading: fastavro would otherwise turn decimals and dates into Python
objects its own way, and `cdc.connect_schema` already converts the raw values.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import fastavro
import httpx
from fastavro.schema import SchemaParseException

from binlake.errors import DecodeError, RetriableError

from .column_defaults import CONNECT_DEFAULT_UNKNOWN
from .connect_schema import KeyPlan, ValuePlan
from .envelope import ChangeEvent, SchemaChangeRecord, event_from_payload, tombstone_from_key

MAGIC_BYTE = 0
HEADER_SIZE = 5

_AVRO_TO_CONNECT = {
    "int": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "boolean": "boolean",
    "string": "string",
    "bytes": "bytes",
    "fixed": "bytes",
    "enum": "string",
}


class SchemaRegistryUnavailable(RetriableError):
    """The schema registry could not be asked; the same record may decode later."""


def split_wire_format(data: bytes) -> tuple[int, memoryview]:
    """Schema id and Avro body of a Confluent-framed message."""
    if len(data) < HEADER_SIZE:
        raise DecodeError(
            f"Avro record is {len(data)} bytes, shorter than the {HEADER_SIZE}-byte "
            "Confluent header"
        )
    if data[0] != MAGIC_BYTE:
        raise DecodeError(
            f"Avro record starts with byte 0x{data[0]:02x}, not the Confluent magic byte 0x00"
        )
    return int.from_bytes(data[1:HEADER_SIZE], "big"), memoryview(data)[HEADER_SIZE:]


def without_logical_types(schema: Any) -> Any:
    """`schema` with every `logicalType` removed, so fastavro yields the raw encoded values."""
    if isinstance(schema, dict):
        return {k: without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [without_logical_types(item) for item in schema]
    return schema


def avro_to_connect(schema: Any, named: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The Connect schema (as JsonConverter would write it) that an Avro schema stands for."""
    return _to_connect(schema, {} if named is None else named, namespace="")


def _to_connect(schema: Any, named: dict[str, dict[str, Any]], namespace: str) -> dict[str, Any]:
    if isinstance(schema, list):
        branches = [branch for branch in schema if branch != "null"]
        if len(branches) != 1:
            raise DecodeError(f"Avro union {schema!r} is not a nullable single type")
        return {**_to_connect(branches[0], named, namespace), "optional": "null" in schema}
    if isinstance(schema, str):
        if schema in _AVRO_TO_CONNECT:
            return {"type": _AVRO_TO_CONNECT[schema], "optional": False}
        reference = named.get(schema) or named.get(f"{namespace}.{schema}")
        if reference is None:
            raise DecodeError(f"Avro schema refers to unknown type {schema!r}")
        return dict(reference)
    if not isinstance(schema, Mapping):
        raise DecodeError(f"Avro schema {schema!r} is neither a name, a union nor an object")
    kind = schema.get("type")
    result: dict[str, Any]
    if kind == "record":
        name = str(schema.get("name", ""))
        space = str(schema.get("namespace", namespace if "." not in name else ""))
        fullname = name if "." in name or not space else f"{space}.{name}"
        space = fullname.rpartition(".")[0]
        fields = [_field_to_connect(f, named, space) for f in schema.get("fields", ())]
        result = {"type": "struct", "fields": fields, "optional": False}
        result["name"] = schema.get("connect.name") or fullname
        named[fullname] = result
        named.setdefault(name, result)
    elif kind == "array":
        result = {
            "type": "array",
            "items": _to_connect(schema["items"], named, namespace),
            "optional": False,
        }
    elif kind == "map":
        result = {
            "type": "map",
            "keys": {"type": "string", "optional": False},
            "values": _to_connect(schema["values"], named, namespace),
            "optional": False,
        }
    elif kind in _AVRO_TO_CONNECT:
        result = {"type": schema.get("connect.type") or _AVRO_TO_CONNECT[kind], "optional": False}
        if kind in ("enum", "fixed") and "name" in schema:
            named[str(schema["name"])] = result
    else:  # a nested type definition such as {"type": ["null", ...]} or {"type": "Value"}
        result = _to_connect(kind, named, namespace)
    if kind != "record" and schema.get("connect.name"):
        result["name"] = schema["connect.name"]
    if schema.get("connect.parameters"):
        result["parameters"] = dict(schema["connect.parameters"])
    return result


def _field_to_connect(
    avro_field: Mapping[str, Any], named: dict[str, dict[str, Any]], namespace: str
) -> dict[str, Any]:
    """One record field as a Connect struct field, with the column default Connect would show.

    AvroData writes a Connect default both as the Avro field's `default` and as `connect.default`
    on the field's type. A bytes default (BINARY, BIT, DECIMAL in precise mode) is text in Avro's
    JSON encoding of bytes: one character per byte, code points 0-255 (ISO-8859-1), as seen in the
    schemas a real converter registered (BIT(3) DEFAULT b'101' as "\u0005", DECIMAL(10,2)
    DEFAULT 1.50 as "\u0000\u0096"). Text that is not such a string is marked unknown rather
    than guessed, so a column added with it fails loudly (`binlake.bronze.schema_drift`) instead of
    filling old rows with a wrong value.
    """
    result = {**_to_connect(avro_field["type"], named, namespace), "field": avro_field["name"]}
    default = _connect_default(avro_field["type"])
    if default is None:
        default = avro_field.get("default")
    if default is not None:
        if result.get("type") == "bytes":
            try:
                result["default"] = default.encode("iso-8859-1")
            except (AttributeError, UnicodeEncodeError):
                result[CONNECT_DEFAULT_UNKNOWN] = True
        else:
            result["default"] = default
    return result


def _connect_default(avro_type: Any) -> Any:
    """The `connect.default` of a field's (non-null branch) type, None if it has none."""
    if isinstance(avro_type, list):
        branches = [branch for branch in avro_type if branch != "null"]
        return _connect_default(branches[0]) if len(branches) == 1 else None
    if isinstance(avro_type, Mapping):
        return avro_type.get("connect.default")
    return None


@dataclass
class _Registered:
    """One writer schema from the registry, with what was derived from it so far."""

    parsed: Any
    connect: dict[str, Any]
    key_plan: KeyPlan | None = field(default=None)
    value_plan: ValuePlan | None = field(default=None)


class ConfluentAvroDecoder:
    """Decodes Confluent-framed Avro records, fetching writer schemas from a registry."""

    def __init__(
        self, registry_url: str, http_client: httpx.Client | None = None, *, timeout: float = 10.0
    ):
        self.registry_url = registry_url.rstrip("/")
        self._own_client = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(timeout=timeout)
        self._schemas: dict[int, _Registered] = {}

    def close(self) -> None:
        if self._own_client:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _registered(self, schema_id: int) -> _Registered:
        known = self._schemas.get(schema_id)
        if known is None:
            known = self._fetch(schema_id)
            self._schemas[schema_id] = known
        return known

    def _fetch(self, schema_id: int) -> _Registered:
        url = f"{self.registry_url}/schemas/ids/{schema_id}"
        try:
            response = self._http.get(url)
        except httpx.HTTPError as exc:
            raise SchemaRegistryUnavailable(
                f"schema registry at {url} unreachable: {exc}"
            ) from None
        if response.status_code == 404:
            raise DecodeError(f"schema id {schema_id} is unknown to the registry at {url}")
        if not response.is_success:
            raise SchemaRegistryUnavailable(
                f"schema registry answered HTTP {response.status_code} for {url}: "
                f"{response.text.strip()[:200]}"
            )
        try:
            body = response.json()
            if body.get("schemaType", "AVRO") != "AVRO":
                raise DecodeError(f"schema id {schema_id} is {body['schemaType']}, not AVRO")
            schema = json.loads(body["schema"])
            parsed = fastavro.parse_schema(without_logical_types(schema))
        except (ValueError, KeyError, TypeError, AttributeError, SchemaParseException) as exc:
            raise DecodeError(
                f"schema id {schema_id} from {url} is not a usable Avro schema: {exc}"
            ) from None
        return _Registered(parsed=parsed, connect=avro_to_connect(schema))

    def writer_schema(self, schema_id: int) -> Any:
        """The parsed (logical-type-free) writer schema registered under `schema_id`."""
        return self._registered(schema_id).parsed

    def decode(self, data: bytes) -> tuple[int, Any]:
        """Schema id and decoded datum of one Confluent-framed Avro message."""
        return self._decode(data)[0:2]

    def _decode(self, data: bytes) -> tuple[int, Any, _Registered]:
        schema_id, body = split_wire_format(data)
        registered = self._registered(schema_id)
        stream = io.BytesIO(body)
        try:
            datum = fastavro.schemaless_reader(stream, registered.parsed)
        except (EOFError, ValueError, IndexError, KeyError, TypeError, OverflowError) as exc:
            raise DecodeError(
                f"Avro body does not match schema id {schema_id}: {type(exc).__name__}: {exc}"
            ) from None
        if stream.tell() != len(body):
            raise DecodeError(
                f"Avro body has {len(body) - stream.tell()} bytes left over after decoding "
                f"with schema id {schema_id}"
            )
        return schema_id, datum, registered

    def decode_change(
        self, key: bytes | None, value: bytes | None, *, topic: str, topic_prefix: str
    ) -> ChangeEvent:
        """Like `cdc.json_decoding.decode_change`, for AvroConverter output."""
        if value is None:
            if key is None:
                raise DecodeError("record has neither key nor value")
            _, key_datum, key_schema = self._decode(key)
            return tombstone_from_key(
                self._key_plan(key_schema), key_datum, topic=topic, topic_prefix=topic_prefix
            )
        _, datum, value_schema = self._decode(value)
        plan = value_schema.value_plan
        if plan is None:
            plan = value_schema.value_plan = ValuePlan(value_schema.connect, base64_bytes=False)
        if plan.is_schema_change:
            raise SchemaChangeRecord(f"schema-change (DDL) record on topic {topic!r}")
        primary_key: tuple[str, ...] = ()
        if key is not None:
            schema_id, _ = split_wire_format(key)
            primary_key = self._key_plan(self._registered(schema_id)).names
        return event_from_payload(plan, datum, primary_key, topic=topic)

    @staticmethod
    def _key_plan(registered: _Registered) -> KeyPlan:
        if registered.key_plan is None:
            registered.key_plan = KeyPlan(registered.connect, base64_bytes=False)
        return registered.key_plan

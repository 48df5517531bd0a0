"""Decoding of Debezium records written by Kafka Connect's JsonConverter into ChangeEvents.

Records come with `schemas.enable=true`: each key and value is `{"schema": <Connect schema>,
"payload": <data>}`. Per-record cost matters (the bronze writer aims at 100k events/s): the
schema text is sliced out of the raw bytes and used as the key of the compiled plan
(`cdc.connect_schema`), so a record whose schema was seen before costs one parse of its payload
plus the few conversions its columns need. Payloads are parsed with orjson (about 3x faster than
`json`); whatever orjson would parse differently or refuses, and any record that fails, goes
through `json` again, so what is accepted, every value and every error message stay those of
`json` (see "the orjson fast path" below).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from binlake.errors import DecodeError

from .connect_schema import KeyPlan, PlanCache, ValuePlan
from .envelope import (
    ROW_IMAGE_OF_OP,
    ChangeEvent,
    SchemaChangeRecord,
    event_from_payload,
    keyless_tombstone,
    tombstone_from_key,
)

__all__ = ["clear_schema_cache", "decode_change"]

# Compiled plans keyed by the schema text of a JsonConverter record (Avro keys them by id).
_VALUE_PLANS = PlanCache(lambda schema: ValuePlan(schema))
_KEY_PLANS = PlanCache(lambda schema: KeyPlan(schema))


def clear_schema_cache() -> None:
    """Forget every compiled schema (tests; a long-running process never needs to)."""
    _VALUE_PLANS.clear()
    _KEY_PLANS.clear()


_HEAD = b'{"schema":'
_SEPARATOR = b',"payload":'
_HEAD_LEN = len(_HEAD)
_SEPARATOR_LEN = len(_SEPARATOR)


def _parse(raw: bytes, what: str, cache: PlanCache) -> tuple[Any, bytes | None]:
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


def _parse_whole(raw: bytes, what: str, cache: PlanCache) -> tuple[Any, None]:
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
    image = payload.get(ROW_IMAGE_OF_OP.get(payload.get("op"), "after"))  # type: ignore[arg-type]
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

"""The decoded change event and how it is built from a Debezium envelope's payload.

`ChangeEvent` (row image, Arrow schema, key names, `SourcePosition`) is what every decoder
yields (`cdc.json_decoding` for JsonConverter, `cdc.avro` for AvroConverter) and what the
bronze writer stores. The constructors here take a payload already parsed and a compiled
`cdc.connect_schema` plan, so both wire formats share one definition of a change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import pyarrow as pa

from binlake.errors import DecodeError

from .connect_schema import KeyPlan, ValuePlan

__all__ = [
    "LEGACY_TOMBSTONE",
    "OPS",
    "ROW_IMAGE_OF_OP",
    "TOMBSTONE",
    "TRUNCATE",
    "ChangeEvent",
    "SchemaChangeRecord",
    "SourcePosition",
    "event_from_payload",
    "keyless_tombstone",
    "source_position",
    "table_of_topic",
    "tombstone_from_key",
]

OPS = ("c", "u", "d", "r", "t")
TRUNCATE = "t"
# binlake's own op for a Kafka tombstone (a record with a null value), which Debezium gives no
# op. Not a letter Debezium uses (c, u, d, r, t, m): "x" as in "crossed out".
TOMBSTONE = "x"
# Bronze files written before TRUNCATE was captured marked tombstones with "t". Readers tell the
# two apart by the source position: a tombstone has none, a TRUNCATE always has its binlog file
# and position (see `binlake.silver.logic.is_tombstone`).
LEGACY_TOMBSTONE = "t"


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


# Which image of an envelope holds the row, by op (TRUNCATE and tombstones have none).
ROW_IMAGE_OF_OP = {"c": "after", "u": "after", "r": "after", "d": "before"}
_WHAT_OF_IMAGE = {"after": "'after'", "before": "'before'"}  # for error messages


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
    image = ROW_IMAGE_OF_OP.get(op)  # type: ignore[arg-type]
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

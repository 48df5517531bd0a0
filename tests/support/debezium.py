"""Debezium 3.0 MySQL change records as Kafka Connect's JsonConverter (schemas.enable=true)
writes them: compact `{"schema": ..., "payload": ...}` JSON bytes.

Two builders over the same Connect schema pieces: the module functions (`value_bytes`,
`key_bytes`, `source`, `order_row`) build the full 3.0.7 envelope of one `shop.orders` table with
every column type the decoder handles (`DECODED_ORDER`: the row `order_row()` decodes to);
`DebeziumTable` builds the small envelope the bronze worker tests stream by the thousand, for any
table and topic prefix.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

PREFIX = "binlake"
TOPIC = "binlake.shop.orders"
HOUR_MS = 3_600_000
# 2026-11-21 10:00:00 UTC, a whole hour.
BASE_TS_MS = 1_795_255_200_000


def connect_field(
    field_name: str, type_: str, optional: bool = False, /, **extra: Any
) -> dict[str, Any]:
    """One field of a Connect struct schema (`extra`: its `name`, `version`, `parameters`...)."""
    return {"type": type_, "optional": optional, **extra, "field": field_name}


def decimal_field(
    field_name: str, precision: int, scale: int, optional: bool = False
) -> dict[str, Any]:
    """A Connect Decimal field (decimal.handling.mode=precise)."""
    return connect_field(
        field_name,
        "bytes",
        optional,
        name="org.apache.kafka.connect.data.Decimal",
        version=1,
        parameters={"scale": str(scale), "connect.decimal.precision": str(precision)},
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unscaled(value: int, length: int | None = None) -> str:
    """Base64 of a big-endian two's-complement integer, as Connect's Decimal carries it."""
    size = length or max(1, (value.bit_length() + 8) // 8)
    return b64(value.to_bytes(size, "big", signed=True))


def dumps(document: Any) -> bytes:
    # JsonConverter's output is compact JSON with "schema" before "payload".
    return json.dumps(document, separators=(",", ":")).encode()


_f = connect_field

# The `source` block's schema as Debezium 3.0.7 writes it, and the block's fields shared by the
# smaller schema the worker tests use (no ts_us/ts_ns, a bare snapshot enum).
_SOURCE_HEAD = [_f("version", "string"), _f("connector", "string"), _f("name", "string")]
_SOURCE_TAIL = [
    _f("table", "string", True),
    _f("server_id", "int64"),
    _f("gtid", "string", True),
    _f("file", "string"),
    _f("pos", "int64"),
    _f("row", "int32"),
    _f("thread", "int64", True),
    _f("query", "string", True),
]
SNAPSHOT_FIELD = _f(
    "snapshot",
    "string",
    True,
    name="io.debezium.data.Enum",
    version=1,
    parameters={
        "allowed": "true,first,first_in_data_collection,last_in_data_collection,"
        "last,false,incremental"
    },
    default="false",
)


def _source_schema(fields: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "type": "struct",
        "fields": fields,
        "optional": False,
        "name": "io.debezium.connector.mysql.Source",
        **extra,
        "field": "source",
    }


SOURCE_SCHEMA = _source_schema(
    [
        *_SOURCE_HEAD,
        _f("ts_ms", "int64"),
        SNAPSHOT_FIELD,
        _f("db", "string"),
        _f("sequence", "string", True),
        _f("ts_us", "int64", True),
        _f("ts_ns", "int64", True),
        *_SOURCE_TAIL,
    ],
    version=1,
)
SMALL_SOURCE_SCHEMA = _source_schema(
    [
        *_SOURCE_HEAD,
        _f("ts_ms", "int64"),
        _f("snapshot", "string", True, name="io.debezium.data.Enum", version=1),
        _f("db", "string"),
        _f("sequence", "string", True),
        *_SOURCE_TAIL,
    ]
)

TRANSACTION_SCHEMA = {
    "type": "struct",
    "fields": [
        _f("id", "string"),
        _f("total_order", "int64"),
        _f("data_collection_order", "int64"),
    ],
    "optional": True,
    "name": "event.block",
    "version": 1,
    "field": "transaction",
}


def _envelope_schema(
    columns: list[dict[str, Any]], topic: str, *fields: dict[str, Any]
) -> dict[str, Any]:
    """The value schema of `topic`: before and after images of `columns`, then `fields`."""
    row = {"type": "struct", "fields": columns, "optional": True, "name": f"{topic}.Value"}
    return {
        "type": "struct",
        "fields": [{**row, "field": "before"}, {**row, "field": "after"}, *fields],
        "optional": False,
        "name": f"{topic}.Envelope",
        "version": 2,
    }


def envelope_schema(
    columns: list[dict[str, Any]], table: str = "shop.orders", prefix: str = PREFIX
) -> dict[str, Any]:
    """The full 3.0.7 value schema (before, after, source, transaction, op, ts_*)."""
    return _envelope_schema(
        columns,
        f"{prefix}.{table}",
        SOURCE_SCHEMA,
        TRANSACTION_SCHEMA,
        _f("op", "string"),
        _f("ts_ms", "int64", True),
        _f("ts_us", "int64", True),
        _f("ts_ns", "int64", True),
    )


def key_schema(table: str = "shop.orders", prefix: str = PREFIX) -> dict[str, Any]:
    return {
        "type": "struct",
        "fields": [_f("id", "int64")],
        "optional": False,
        "name": f"{prefix}.{table}.Key",
    }


# -- the full envelope of shop.orders ----------------------------------------------------------

ORDER_COLUMNS = [
    _f("id", "int64"),
    _f("customer_id", "int32"),
    _f(
        "status",
        "string",
        name="io.debezium.data.Enum",
        version=1,
        parameters={"allowed": "new,paid,shipped"},
    ),
    decimal_field("total", 12, 2),
    _f("weight", "float64", True),
    _f("placed_at", "int64", name="io.debezium.time.MicroTimestamp", version=1),
    _f("updated_at", "string", True, name="io.debezium.time.ZonedTimestamp", version=1),
    _f("ship_date", "int32", True, name="io.debezium.time.Date", version=1),
    _f("prep_time", "int64", True, name="io.debezium.time.MicroTime", version=1),
    _f("note", "string", True),
    _f("attrs", "string", True, name="io.debezium.data.Json", version=1),
    _f("small", "int16", True),
    _f("tiny", "int8", True),
    _f("ratio", "float32", True),
    _f("paid", "boolean", True),
]


def source(snapshot: str = "false", **overrides: Any) -> dict[str, Any]:
    block = {
        "version": "3.0.7.Final",
        "connector": "mysql",
        "name": PREFIX,
        "ts_ms": 1795248000000,
        "snapshot": snapshot,
        "db": "shop",
        "sequence": None,
        "ts_us": 1795248000000000,
        "ts_ns": 1795248000000000000,
        "table": "orders",
        "server_id": 1,
        "gtid": None,
        "file": "mariadb-bin.000003",
        "pos": 4512,
        "row": 0,
        "thread": 7,
        "query": None,
    }
    block.update(overrides)
    return block


# Each column of the demo order: its value in the record Debezium writes, and the value the
# decoder gives for it.
_ORDER_VALUES: dict[str, tuple[Any, Any]] = {
    "id": (1001, 1001),
    "customer_id": (7, 7),
    "status": ("paid", "paid"),
    "total": (unscaled(-12345), Decimal("-123.45")),
    "weight": (1.5, 1.5),
    "placed_at": (1795248000123456, datetime(2026, 11, 21, 8, 0, 0, 123456)),
    "updated_at": (
        "2026-11-21T08:00:00.123456Z",
        datetime(2026, 11, 21, 8, 0, 0, 123456, tzinfo=UTC),
    ),
    "ship_date": (20413, date(2025, 11, 21)),
    "prep_time": (-(3 * 3600 + 2) * 1_000_000, -timedelta(hours=3, seconds=2)),  # TIME '-03:00:02'
    "note": ("leave at door", "leave at door"),
    "attrs": ('{"gift":true}', '{"gift":true}'),
    "small": (-300, -300),
    "tiny": (5, 5),
    "ratio": (0.25, 0.25),
    "paid": (True, True),
}
# The row `order_row()` decodes to, in column order.
DECODED_ORDER: dict[str, Any] = {name: decoded for name, (_, decoded) in _ORDER_VALUES.items()}


def order_row(**overrides: Any) -> dict[str, Any]:
    """The demo order's `after` image as Debezium writes it, with `overrides`."""
    return {name: raw for name, (raw, _) in _ORDER_VALUES.items()} | overrides


def value_bytes(
    op: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    *,
    columns: list[dict[str, Any]] = ORDER_COLUMNS,
    src: dict[str, Any] | None = None,
) -> bytes:
    payload = {
        "before": before,
        "after": after,
        "source": src or source(),
        "transaction": None,
        "op": op,
        "ts_ms": 1795248000456,
        "ts_us": 1795248000456123,
        "ts_ns": 1795248000456123000,
    }
    return dumps({"schema": envelope_schema(columns), "payload": payload})


def key_bytes(order_id: int = 1001) -> bytes:
    return dumps({"schema": key_schema(), "payload": {"id": order_id}})


# -- the small envelope of any table -----------------------------------------------------------

DEFAULT_COLUMNS = [
    _f("id", "int64"),
    _f("name", "string", True),
    _f("qty", "int32", True),
    decimal_field("price", 10, 2, optional=True),
]


@dataclass
class DebeziumTable:
    """Builds JsonConverter-encoded Debezium records for one table."""

    db: str = "shop"
    table: str = "orders"
    prefix: str = PREFIX
    columns: list[dict[str, Any]] = field(default_factory=lambda: list(DEFAULT_COLUMNS))
    topic: str = field(init=False)  # <prefix>.<db>.<table>
    name: str = field(init=False)  # <db>.<table>

    def __post_init__(self) -> None:
        self.name = f"{self.db}.{self.table}"
        self.topic = f"{self.prefix}.{self.name}"

    def with_column(self, column: dict[str, Any]) -> DebeziumTable:
        return DebeziumTable(self.db, self.table, self.prefix, [*self.columns, column])

    def key_schema(self) -> dict[str, Any]:
        return key_schema(self.name, self.prefix)

    def value_schema(self) -> dict[str, Any]:
        return _envelope_schema(
            self.columns,
            self.topic,
            SMALL_SOURCE_SCHEMA,
            _f("op", "string"),
            _f("ts_ms", "int64", True),
        )

    def key(self, id_: int) -> bytes:
        return dumps({"schema": self.key_schema(), "payload": {"id": id_}})

    def row(self, id_: int, **values: Any) -> dict[str, Any]:
        row: dict[str, Any] = {"id": id_, "name": f"item-{id_}", "qty": id_ % 7, "price": None}
        if "price_cents" in values:
            row["price"] = unscaled(values.pop("price_cents"))
        for column in self.columns:
            row.setdefault(column["field"], None)
        row.update(values)
        return {k: v for k, v in row.items() if k in {c["field"] for c in self.columns}}

    def change(
        self,
        op: str,
        id_: int,
        *,
        ts_ms: int = BASE_TS_MS,
        pos: int = 4,
        snapshot: str = "false",
        **values: Any,
    ) -> tuple[bytes, bytes]:
        """(key, value) of a c/u/d/r change of row `id_` committed at `ts_ms`."""
        image = self.row(id_, **values)
        payload = {
            "before": image if op in ("u", "d") else None,
            "after": None if op == "d" else image,
            "source": {
                "version": "3.0.7.Final",
                "connector": "mysql",
                "name": self.prefix,
                "ts_ms": ts_ms,
                "snapshot": snapshot,
                "db": self.db,
                "sequence": None,
                "table": self.table,
                "server_id": 1,
                "gtid": None,
                "file": "mariadb-bin.000003",
                "pos": pos,
                "row": 0,
                "thread": 7,
                "query": None,
            },
            "op": op,
            "ts_ms": ts_ms + 15,
        }
        return self.key(id_), dumps({"schema": self.value_schema(), "payload": payload})

    def tombstone(self, id_: int) -> tuple[bytes, None]:
        return self.key(id_), None

    def truncate(self, *, ts_ms: int = BASE_TS_MS, pos: int = 4) -> tuple[None, bytes]:
        """(key, value) of a TRUNCATE TABLE as Debezium sends it: null key, no row image."""
        _, value = self.change("c", 0, ts_ms=ts_ms, pos=pos)
        document = json.loads(value)
        document["payload"].update(before=None, after=None, op="t")
        return None, dumps(document)


def schema_change_value(prefix: str = PREFIX) -> bytes:
    schema = {
        "type": "struct",
        "fields": [_f("source", "string"), _f("databaseName", "string"), _f("ddl", "string")],
        "optional": False,
        "name": "io.debezium.connector.mysql.SchemaChangeValue",
    }
    payload = {"source": "{}", "databaseName": "shop", "ddl": "ALTER TABLE orders ADD x INT"}
    return dumps({"schema": schema, "payload": payload})

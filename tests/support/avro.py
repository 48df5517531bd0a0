"""Avro schemas shaped the way Debezium's AvroConverter registers them (the Connect schema kept
in `connect.*` properties): the pieces every Debezium MySQL envelope has, for the decoder's tests
(encoded with fastavro) and the worker's (encoded by confluent-kafka's AvroSerializer)."""

from __future__ import annotations

from typing import Any


def optional(avro_type: Any, name: str) -> dict[str, Any]:
    """A nullable field, null by default."""
    return {"name": name, "type": ["null", avro_type], "default": None}


def logical(avro_type: str, connect_name: str, **extra: Any) -> dict[str, Any]:
    """An Avro type carrying a Connect logical type (`connect.name`)."""
    return {"type": avro_type, "connect.version": 1, "connect.name": connect_name, **extra}


def record(
    name: str, namespace: str, fields: list[Any], connect_name: str | None = None, **connect: Any
) -> dict[str, Any]:
    """An Avro record as the AvroConverter writes it: the Connect schema's properties
    (`connect`, e.g. `connect.version`) and its name, where it has one, last."""
    schema = {"type": "record", "name": name, "namespace": namespace, "fields": fields, **connect}
    if connect_name is not None:
        schema["connect.name"] = connect_name
    return schema


def _sub_millisecond(with_them: bool) -> list[dict[str, Any]]:
    # Debezium 3.0's ts_us and ts_ns next to ts_ms; the worker tests' records leave them out.
    return [optional("long", "ts_us"), optional("long", "ts_ns")] if with_them else []


def source_record(*, sub_millisecond_times: bool) -> dict[str, Any]:
    """The `source` block's record."""
    snapshot = {
        "type": "string",
        "connect.version": 1,
        "connect.parameters": {"allowed": "true,first,last,false,incremental"},
        "connect.default": "false",
        "connect.name": "io.debezium.data.Enum",
    }
    namespace = "io.debezium.connector.mysql"
    fields = [
        {"name": "version", "type": "string"},
        {"name": "connector", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "ts_ms", "type": "long"},
        {"name": "snapshot", "type": [snapshot, "null"], "default": "false"},
        {"name": "db", "type": "string"},
        optional("string", "sequence"),
        *_sub_millisecond(sub_millisecond_times),
        optional("string", "table"),
        {"name": "server_id", "type": "long"},
        optional("string", "gtid"),
        {"name": "file", "type": "string"},
        {"name": "pos", "type": "long"},
        {"name": "row", "type": "int"},
        optional("long", "thread"),
        optional("string", "query"),
    ]
    return record("Source", namespace, fields, f"{namespace}.Source")


def envelope_record(
    value_record: dict[str, Any], namespace: str, *, sub_millisecond_times: bool
) -> dict[str, Any]:
    """The value schema of a change topic: before and after images of `value_record`, source,
    transaction, op and the capture time."""
    transaction = record(
        "block",
        "event",
        [
            {"name": "id", "type": "string"},
            {"name": "total_order", "type": "long"},
            {"name": "data_collection_order", "type": "long"},
        ],
        "event.block",
    )
    fields = [
        optional(value_record, "before"),
        optional("Value", "after"),
        {"name": "source", "type": source_record(sub_millisecond_times=sub_millisecond_times)},
        optional(transaction, "transaction"),
        {"name": "op", "type": "string"},
        optional("long", "ts_ms"),
        *_sub_millisecond(sub_millisecond_times),
    ]
    return record("Envelope", namespace, fields, f"{namespace}.Envelope", **{"connect.version": 2})


def key_record(namespace: str) -> dict[str, Any]:
    """The key schema of a table keyed by `id BIGINT`."""
    return record("Key", namespace, [{"name": "id", "type": "long"}], f"{namespace}.Key")

"""Bad records of every kind the bronze worker dead-letters (`BAD_KINDS`), and where a record
ended up: the offsets bronze holds and the offsets dead-lettered to the lake, counted so that an
offset in both, or twice, shows."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from binlake.bronze import layout
from binlake.bronze.manifest import Manifest
from binlake.storage import LakeStorage

# The bronze.max_message_bytes of the bad-input tests: a record over it is dead-lettered.
MAX_MESSAGE_BYTES = 4096


def _envelope(
    table: Any,
    *,
    op: str = "c",
    id_: int = 1,
    drop_schema: tuple[str, ...] = (),
    drop_payload: tuple[str, ...] = (),
    payload: dict[str, Any] | None = None,
    **values: Any,
) -> tuple[bytes, bytes]:
    """A Debezium JSON change of `table`, then edited: schema fields or payload keys removed."""
    key, value = table.change(op if op in ("c", "u", "d", "r") else "c", id_, **values)
    document = json.loads(value)
    fields = document["schema"]["fields"]
    document["schema"]["fields"] = [f for f in fields if f["field"] not in drop_schema]
    for name in drop_payload:
        del document["payload"][name]
    if op not in ("c", "u", "d", "r"):
        document["payload"]["op"] = op
    document["payload"].update(payload or {})
    return key, json.dumps(document, separators=(",", ":")).encode()


Kind = tuple[str, tuple[bytes | None, bytes | None], str]

# kind -> builder of (topic, (key, value), part of the expected reason) for a table builder `t`.
BAD_KINDS: dict[str, Callable[[Any], Kind]] = {
    "not_json": lambda t: (t.topic, (b'{"id": 1}', b"\x00 not json"), "not valid JSON"),
    "schema_without_op": lambda t: (t.topic, _envelope(t, drop_schema=("op",)), "no 'op' field"),
    "payload_without_op": lambda t: (t.topic, _envelope(t, drop_payload=("op",)), "no 'op'"),
    "schema_without_source": lambda t: (
        t.topic,
        _envelope(t, drop_schema=("source",)),
        "no 'source' field",
    ),
    "payload_without_source": lambda t: (
        t.topic,
        _envelope(t, drop_payload=("source",)),
        "no 'source'",
    ),
    "null_source": lambda t: (t.topic, _envelope(t, payload={"source": None}), "'source' is"),
    "unknown_op": lambda t: (t.topic, _envelope(t, op="x"), "unknown op 'x'"),
    "truncate_without_position": lambda t: (
        t.topic,
        _envelope(
            t,
            op="t",
            payload={"after": None, "source": {"db": "shop", "table": "orders", "ts_ms": 1}},
        ),
        "has no binlog position",
    ),
    "text_in_int_column": lambda t: (t.topic, t.change("c", 1, qty="abc"), "column 'qty'"),
    "int_out_of_range": lambda t: (t.topic, t.change("c", 1, qty=2**40), "column 'qty'"),
    "bool_in_int_column": lambda t: (t.topic, t.change("c", 1, qty=True), "column 'qty'"),
    "float_in_int_column": lambda t: (t.topic, t.change("c", 1, qty=1.5), "column 'qty'"),
    "number_in_string_column": lambda t: (t.topic, t.change("c", 1, name=5), "column 'name'"),
    "lone_surrogate": lambda t: (t.topic, t.change("c", 1, name="\ud800"), "column 'name'"),
    "oversized": lambda t: (
        t.topic,
        t.change("c", 1, name="x" * MAX_MESSAGE_BYTES),
        f"more than bronze.max_message_bytes={MAX_MESSAGE_BYTES}",
    ),
    "tombstone_without_key": lambda t: (t.topic, (None, None), "neither key nor value"),
    "tombstone_undecodable_key": lambda t: (
        t.topic,
        (b"\xff\xfe junk", None),
        "key is not valid JSON",
    ),
    "tombstone_key_of_wrong_type": lambda t: (t.topic, t.tombstone("abc"), "column 'id'"),
    "topic_with_dotdot": lambda t: ("binlake.shop..orders", t.change("c", 1), "bronze path"),
    "topic_parent_dir": lambda t: ("binlake...", t.change("c", 1), "bronze path"),
    "topic_with_slash": lambda t: ("binlake.shop.x/../../../etc", t.change("c", 1), "bronze path"),
    "topic_absolute_path": lambda t: ("/etc/passwd", t.change("c", 1), "bronze path"),
    "topic_just_dotdot": lambda t: ("..", t.change("c", 1), "bronze path"),
    "topic_of_another_prefix": lambda t: ("other.shop.orders", t.change("c", 1), "bronze path"),
}


def topic_offsets_in_bronze(lake: LakeStorage) -> Counter:
    """(topic, partition, offset) -> number of bronze rows (over all manifest files)."""
    seen: Counter = Counter()
    for entry in Manifest(lake).entries():
        table = pq.read_table(
            lake.full_path(entry.path), columns=["_topic", "_partition", "_offset"]
        )
        seen.update(zip(*(table.column(i).to_pylist() for i in range(3)), strict=True))
    return seen


def dead_letter_offsets(lake_dir: Path) -> Counter:
    seen: Counter = Counter()
    for path in (lake_dir / layout.DEAD_LETTER_DIR).glob("*.json"):
        letter = json.loads(path.read_text())
        seen[(letter["topic"], letter["partition"], letter["offset"])] += 1
    return seen

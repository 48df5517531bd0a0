"""Bronze rows to Parquet bytes.

A bronze file's schema is the provenance columns of `binlake.bronze.layout` (where the row came
from in Kafka and in the binlog) followed by the table's own columns, in the order Debezium
gives them. Every table column is nullable in bronze: a tombstone row carries only the key
columns, and bronze records what arrived rather than enforcing the source's constraints.
Files are zstd-compressed and carry the table name and primary key as key-value metadata.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from binlake.bronze import layout
from binlake.errors import DecodeError

COMPRESSION = "zstd"

PROVENANCE_SCHEMA = pa.schema(
    [
        pa.field(layout.TOPIC, pa.string(), nullable=False),
        pa.field(layout.PARTITION, pa.int32(), nullable=False),
        pa.field(layout.OFFSET, pa.int64(), nullable=False),
        pa.field(layout.OP, pa.string(), nullable=False),
        pa.field(layout.SOURCE_FILE, pa.string()),
        pa.field(layout.SOURCE_POS, pa.int64()),
        pa.field(layout.SOURCE_ROW, pa.int32()),
        pa.field(layout.SOURCE_TS_MS, pa.int64()),
        pa.field(layout.SOURCE_SNAPSHOT, pa.string()),
        pa.field(layout.CAPTURED_TS_MS, pa.int64()),
    ]
)
_PROVENANCE_NAMES = frozenset(layout.PROVENANCE_COLUMNS)


class _Source(Protocol):
    file: str | None
    pos: int | None
    row: int | None
    ts_ms: int
    snapshot: str | None


class _Event(Protocol):
    op: str
    row: dict[str, Any]
    source: _Source | None
    captured_ts_ms: int | None


def bronze_schema(row_schema: pa.Schema) -> pa.Schema:
    """Provenance columns followed by `row_schema`'s columns, all of the latter nullable.

    Raises DecodeError if a table column has the name of a provenance column.
    """
    clash = _PROVENANCE_NAMES.intersection(row_schema.names)
    if clash:
        raise DecodeError(f"table columns {sorted(clash)} collide with bronze provenance columns")
    table_fields = [field.with_nullable(True) for field in row_schema]
    return pa.schema(list(PROVENANCE_SCHEMA) + table_fields)


def build_table(
    topic: str,
    partition: int,
    records: Sequence[tuple[int, _Event]],
    row_schema: pa.Schema,
    *,
    table: str,
    primary_key: Sequence[str],
) -> pa.Table:
    """An Arrow table of bronze rows: one per `(offset, event)` in `records`, in that order.

    Columns of `row_schema` that an event's row lacks (all but the key, for a tombstone) are
    null. The table's schema metadata names the table and its primary key.
    """
    schema = bronze_schema(row_schema)
    n = len(records)
    events = [event for _, event in records]
    sources = [event.source for event in events]
    provenance = [
        pa.repeat(pa.scalar(topic, pa.string()), n),
        pa.repeat(pa.scalar(partition, pa.int32()), n),
        pa.array([offset for offset, _ in records], pa.int64()),
        pa.array([event.op for event in events], pa.string()),
        pa.array([s.file if s is not None else None for s in sources], pa.string()),
        pa.array([s.pos if s is not None else None for s in sources], pa.int64()),
        pa.array([s.row if s is not None else None for s in sources], pa.int32()),
        pa.array([s.ts_ms if s is not None else None for s in sources], pa.int64()),
        pa.array([s.snapshot if s is not None else None for s in sources], pa.string()),
        pa.array([event.captured_ts_ms for event in events], pa.int64()),
    ]
    # Column by column, as `pa.Table.from_pylist(rows, schema=...)` would, but about twice as
    # fast: one `dict.get` per value (a missing column is null) and one `pa.array` per column.
    rows = [event.row for event in events]
    columns = provenance
    for field in row_schema:
        name = field.name
        columns.append(pa.array([row.get(name) for row in rows], field.type))
    metadata = {
        layout.META_TABLE: table.encode(),
        layout.META_PRIMARY_KEY: json.dumps(list(primary_key)).encode(),
    }
    return pa.Table.from_arrays(columns, schema=schema.with_metadata(metadata))


def to_parquet_bytes(arrow_table: pa.Table) -> bytes:
    """`arrow_table` as one zstd-compressed Parquet file."""
    sink = pa.BufferOutputStream()
    pq.write_table(arrow_table, sink, compression=COMPRESSION)
    return sink.getvalue().to_pybytes()

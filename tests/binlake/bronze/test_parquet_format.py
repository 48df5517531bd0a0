"""Bronze schema, Parquet encoding and hour bucketing."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from binlake.bronze import layout
from binlake.bronze.layout import HourBucket
from binlake.bronze.parquet_format import (
    PROVENANCE_SCHEMA,
    bronze_schema,
    build_table,
    to_parquet_bytes,
)
from binlake.bronze.partitioner import PreviousDelete, event_time_ms
from binlake.errors import DecodeError
from cdc.envelope import ChangeEvent, SourcePosition

ROW = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("v", pa.decimal128(10, 2))])


def _event(op: str = "c", ts_ms: int | None = 1_709_251_199_999) -> ChangeEvent:
    source = None
    if ts_ms is not None:
        source = SourcePosition(None, None, None, ts_ms, None, "shop", "t", None, None)
    return ChangeEvent("shop.t", op, {"id": 1}, ROW, ("id",), source, None)


def test_provenance_columns_follow_the_shared_layout():
    assert tuple(PROVENANCE_SCHEMA.names) == layout.PROVENANCE_COLUMNS


def test_bronze_schema_is_provenance_then_nullable_table_columns():
    schema = bronze_schema(ROW)
    assert schema.names == [*layout.PROVENANCE_COLUMNS, "id", "v"]
    assert schema.field("id").nullable and schema.field("v").type == pa.decimal128(10, 2)
    with pytest.raises(DecodeError):
        bronze_schema(pa.schema([pa.field("_offset", pa.int64())]))


def test_encoded_file_reads_back_with_metadata():
    data = to_parquet_bytes(
        build_table(
            "binlake.shop.t",
            3,
            [(9, _event()), (10, _event("x", None))],
            ROW,
            table="shop.t",
            primary_key=["id"],
        )
    )
    table = pq.read_table(io.BytesIO(data))
    assert table.column("_offset").to_pylist() == [9, 10]
    assert table.column("_partition").to_pylist() == [3, 3]
    assert table.column("v").to_pylist() == [None, None]
    assert table.schema.metadata[layout.META_TABLE] == b"shop.t"
    assert table.schema.metadata[layout.META_PRIMARY_KEY] == b'["id"]'


def test_hour_bucket_uses_source_time_then_kafka_time():
    assert HourBucket.of_millis(event_time_ms(_event(), None)) == HourBucket("2024-02-29", 23)
    # A tombstone has no source: its Kafka record timestamp decides.
    assert HourBucket.of_millis(event_time_ms(_event("x", None), 1_709_251_200_000)) == HourBucket(
        "2024-03-01", 0
    )
    # The source time wins over the Kafka timestamp when both exist.
    assert event_time_ms(_event(), 5) == 1_709_251_199_999
    # A tombstone right after the delete of its key takes the delete's time.
    assert event_time_ms(_event("x", None), 5, PreviousDelete((1,), 77)) == 77
    assert event_time_ms(_event("x", None), 5, PreviousDelete((2,), 77)) == 5
    assert event_time_ms(_event("x", None), None, PreviousDelete((1,), 77)) == 77
    with pytest.raises(DecodeError):
        event_time_ms(_event("x", None), None)
    with pytest.raises(DecodeError):
        event_time_ms(_event("x", None), -1)

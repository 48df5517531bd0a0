"""SchemaVersionTracker: the schema version and file schema each change is written under."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pytest

from binlake.bronze.manifest import Manifest, ManifestEntry
from binlake.bronze.parquet_format import build_table, to_parquet_bytes
from binlake.bronze.schema_drift import ChangeKind, is_dropped
from binlake.bronze.schema_versions import UNTRACKED, SchemaVersionTracker
from binlake.storage import LakeStorage
from cdc.envelope import ChangeEvent, SourcePosition

TABLE, TOPIC = "shop.orders", "binlake.shop.orders"
ROW = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("name", pa.string())])
WIDER = pa.schema([*ROW, pa.field("note", pa.string())])
KEY = pa.schema([pa.field("id", pa.int64(), nullable=False)])
SOURCE = SourcePosition("bin.000001", 4, 0, 1_700_000_000_000, "false", "shop", "orders", 1, None)


def change(schema: pa.Schema = ROW, op: str = "c") -> ChangeEvent:
    row = {name: 1 if name == "id" else "x" for name in schema.names}
    return ChangeEvent(TABLE, op, row, schema, ("id",), SOURCE, None)


def tombstone() -> ChangeEvent:
    return ChangeEvent(TABLE, "x", {"id": 1}, KEY, ("id",), None, None)


@pytest.fixture
def lake(tmp_path: Path) -> tuple[LakeStorage, Manifest]:
    storage = LakeStorage.from_url(str(tmp_path / "lake"))
    return storage, Manifest(storage)


def tracker_of(lake: tuple[LakeStorage, Manifest]) -> SchemaVersionTracker:
    storage, manifest = lake
    return SchemaVersionTracker(TOPIC, 0, storage=storage, manifest=manifest)


def test_the_first_row_starts_version_1_once_begun(lake):
    tracker = tracker_of(lake)
    placement = tracker.place(change())
    assert (placement.version, placement.schema, placement.primary_key) == (1, ROW, ("id",))
    assert tracker.table_schema(TABLE).version == UNTRACKED  # place() changes nothing
    tracker.begin(TABLE, placement, "t[0]@0")
    assert tracker.table_schema(TABLE).version == 1
    assert tracker.place(change()).version == 1  # the same shape keeps it


def test_an_added_column_is_accepted_as_the_next_version_with_the_merged_schema(lake):
    tracker = tracker_of(lake)
    tracker.begin(TABLE, tracker.place(change()), "t[0]@0")
    placement = tracker.place(change(WIDER))
    assert placement.version == 2 and placement.change.kind is ChangeKind.ACCEPTED
    tracker.begin(TABLE, placement, "t[0]@1")
    dropped = tracker.place(change(ROW))  # `note` dropped again: kept, as nulls
    assert dropped.version == 3 and is_dropped(dropped.schema.field("note"))


def test_tombstones_go_with_the_current_version_or_untracked(lake):
    tracker = tracker_of(lake)
    assert tracker.place(tombstone()).version == UNTRACKED  # no full row seen yet
    tracker.begin(TABLE, tracker.place(change()), "t[0]@0")
    assert tracker.place(tombstone()).schema is tracker.table_schema(TABLE).schema


def test_a_breaking_change_is_logged_with_the_column_and_both_types(lake, caplog):
    tracker = tracker_of(lake)
    tracker.begin(TABLE, tracker.place(change()), "t[0]@0")
    broken = pa.schema([ROW.field("id"), pa.field("name", pa.int32())])
    placement = tracker.place(change(broken))
    assert placement.change.kind is ChangeKind.BREAKING and placement.schema.equals(broken)
    with caplog.at_level(logging.ERROR, logger="binlake.bronze.schema_versions"):
        tracker.begin(TABLE, placement, "t[0]@5")
    assert "column 'name' changed from string to int32" in caplog.text and "t[0]@5" in caplog.text


def test_versions_resume_from_the_newest_listed_file(lake):
    storage, manifest = lake
    path = "bronze/shop.orders/f.parquet"
    data = to_parquet_bytes(
        build_table(TOPIC, 0, [(0, change(WIDER))], WIDER, table=TABLE, primary_key=["id"])
    )
    storage.write_atomic(path, data)
    manifest.append(
        ManifestEntry(
            TABLE, TOPIC, 0, 0, 0, 1, path, "2023-11-14-22:00", len(data), 1.0, "rows",
            primary_key=["id"], schema_version=3,
        )
    )  # fmt: skip
    tracker = tracker_of(lake)
    assert tracker.place(change(WIDER)).version == 3
    assert tracker.table_schema(TABLE).schema.names == WIDER.names  # as the file has it

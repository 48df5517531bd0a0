"""A real lake in tmp_path (fixture `settings`: the lake and state dirs, no BINLAKE_* from the
environment) and bronze files in it with their manifest entries (fixture `bronze`); the same
lake capturing a table without a primary key too (fixture `keyless_settings`); and a check
that no file of the lake holds personal data (`assert_no_file_holds`)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from binlake.bronze import layout as bl
from binlake.bronze.manifest import Manifest, ManifestEntry
from binlake.settings import Settings, load_settings
from binlake.storage import LakeStorage

# Debezium's view of the demo shop tables as bronze stores them.
_CREATED_AT = ("created_at", pa.timestamp("us"))
_PRICE = pa.decimal128(10, 2)


def _shop_table(*columns: tuple[str, pa.DataType]) -> list[tuple[str, pa.DataType]]:
    """A demo table's columns: its key `id`, `columns`, and `updated_at` last."""
    return [("id", pa.int64()), *columns, ("updated_at", pa.timestamp("us"))]


# A table without a primary key, captured by fixture `keyless_settings`.
KEYLESS_TABLE = "shop.events"
TABLE_SCHEMAS: dict[str, list[tuple[str, pa.DataType]]] = {
    "shop.customers": _shop_table(("name", pa.string()), ("email", pa.string()), _CREATED_AT),
    "shop.products": _shop_table(("sku", pa.string()), ("name", pa.string()), ("price", _PRICE)),
    "shop.orders": _shop_table(("customer_id", pa.int64()), ("status", pa.string()), _CREATED_AT),
    "shop.order_items": _shop_table(
        ("order_id", pa.int64()),
        ("product_id", pa.int64()),
        ("quantity", pa.int32()),
        ("unit_price", _PRICE),
    ),
    # No primary key: silver keys it on all its columns.
    KEYLESS_TABLE: [("kind", pa.string()), ("amount", pa.int64())],
}
PRIMARY_KEYS = {table: ["id"] for table in TABLE_SCHEMAS if table != KEYLESS_TABLE}

PROVENANCE_SCHEMA: list[tuple[str, pa.DataType]] = [
    (bl.TOPIC, pa.string()),
    (bl.PARTITION, pa.int32()),
    (bl.OFFSET, pa.int64()),
    (bl.OP, pa.string()),
    (bl.SOURCE_FILE, pa.string()),
    (bl.SOURCE_POS, pa.int64()),
    (bl.SOURCE_ROW, pa.int32()),
    (bl.SOURCE_TS_MS, pa.int64()),
    (bl.SOURCE_SNAPSHOT, pa.string()),
    (bl.CAPTURED_TS_MS, pa.int64()),
]

# 2024-06-01 10:00:00 UTC
BASE_TS_MS = int(datetime(2024, 6, 1, 10, tzinfo=UTC).timestamp() * 1000)


def change(
    op: str,
    offset: int,
    *,
    pos: int | None = None,
    row: int = 0,
    file: str = "mariadb-bin.000001",
    ts_ms: int = BASE_TS_MS,
    no_position: bool | None = None,
    **columns: Any,
) -> dict[str, Any]:
    """One bronze row: provenance plus the table's columns (binlog pos defaults to 1000+offset).

    A Kafka tombstone (op "x", or "t" with `no_position` as files written before TRUNCATE was
    captured have them) has no binlog position, as the bronze worker writes it.
    """
    if no_position is None:
        no_position = op == "x"
    return {
        bl.OP: op,
        bl.OFFSET: offset,
        bl.SOURCE_FILE: None if no_position else file,
        bl.SOURCE_POS: None if no_position else (1000 + offset if pos is None else pos),
        bl.SOURCE_ROW: None if no_position else row,
        bl.SOURCE_TS_MS: ts_ms,
        bl.SOURCE_SNAPSHOT: "false",
        bl.CAPTURED_TS_MS: ts_ms + 5,
        **columns,
    }


FIXED_PARTITIONS_START = "2024-01-01-00:00"


class BronzeWriter:
    """Writes bronze files the way the bronze worker does: file first, then its manifest entry."""

    change = staticmethod(change)
    base_ts_ms = BASE_TS_MS

    def __init__(self, settings: Settings):
        self.settings = settings
        self.storage = LakeStorage.from_url(settings.lake_url)
        self.manifest = Manifest(self.storage)

    def write(
        self,
        table: str,
        rows: list[dict[str, Any]],
        *,
        columns: list[tuple[str, pa.DataType]] | None = None,
        primary_key: list[str] | None = None,
        key_in_manifest: bool = True,
        partition_key: str | None = None,
    ) -> ManifestEntry:
        topic = self.settings.topic_for(table)
        columns = TABLE_SCHEMAS[table] if columns is None else columns
        primary_key = PRIMARY_KEYS.get(table, []) if primary_key is None else primary_key
        schema = pa.schema(PROVENANCE_SCHEMA + columns)
        full_rows = [{bl.TOPIC: topic, bl.PARTITION: 0, **r} for r in rows]
        arrow = pa.Table.from_pylist(full_rows, schema=schema).replace_schema_metadata(
            {bl.META_PRIMARY_KEY: json.dumps(primary_key).encode(), bl.META_TABLE: table.encode()}
        )
        offsets = [r[bl.OFFSET] for r in rows]
        ts = [r[bl.SOURCE_TS_MS] for r in rows]
        bucket = bl.HourBucket.of_millis(min(ts))
        path = bl.bronze_file_path(table, bucket, topic, 0, min(offsets))
        os.makedirs(os.path.dirname(self.storage.full_path(path)), exist_ok=True)
        pq.write_table(arrow, self.storage.full_path(path))
        entry = ManifestEntry(
            table=table,
            topic=topic,
            partition=0,
            first_offset=min(offsets),
            last_offset=max(offsets),
            rows=len(rows),
            path=path,
            partition_key=partition_key or bucket.partition_key,
            bytes=os.path.getsize(self.storage.full_path(path)),
            written_at=1717236000.5,
            rotation_reason="rows",
            primary_key=primary_key if key_in_manifest else [],
            min_source_ts_ms=min(ts),
            max_source_ts_ms=max(ts),
        )
        self.manifest.append(entry)
        return entry


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("BINLAKE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BINLAKE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("BINLAKE_STORAGE_URL", str(tmp_path / "lake"))
    # Tests build definitions before they write their (2024) bronze files: partitions from a
    # fixed start, not from the lake (tests/dagster_defs/test_partitions_start.py covers that).
    monkeypatch.setenv("BINLAKE_DAGSTER__PARTITIONS_START", FIXED_PARTITIONS_START)
    return load_settings()


@pytest.fixture
def bronze(settings: Settings) -> BronzeWriter:
    return BronzeWriter(settings)


@pytest.fixture
def keyless_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`settings` that capture the keyless table `KEYLESS_TABLE` besides shop.orders."""
    monkeypatch.setenv("BINLAKE_TABLES", f'["shop.orders", "{KEYLESS_TABLE}"]')
    return load_settings()


def assert_no_file_holds(directory: Path, values: list[str]) -> None:
    """No file below `directory` (a Delta table's data or its log) holds any of `values`."""
    for path in directory.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(s.encode() in data for s in values), path


def with_retention(base: Settings, days: float | None = 2.0, hours: float = 1.0) -> Settings:
    """`base` with `compactor.bronze_retention_days` and `superseded_retention_hours` set."""
    compactor = base.compactor.model_copy(
        update={"bronze_retention_days": days, "superseded_retention_hours": hours}
    )
    return base.model_copy(update={"compactor": compactor})

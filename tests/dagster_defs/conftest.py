"""A real lake in tmp_path: bronze Parquet files written with pyarrow and a real manifest."""

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from binlake.bronze import layout as bl
from binlake.bronze.consumer_lag import TableLag, table_lag
from binlake.bronze.manifest import Manifest, ManifestEntry
from binlake.settings import Settings, load_settings
from binlake.storage import LakeStorage
from dagster_defs.resources import (
    CONSUMER_LAG,
    MYSQL_SOURCE,
    ConsumerLagSource,
    MySQLSource,
    build_resources,
)

# Debezium's view of the demo shop tables as bronze stores them.
TABLE_SCHEMAS: dict[str, list[tuple[str, pa.DataType]]] = {
    "shop.customers": [
        ("id", pa.int64()),
        ("name", pa.string()),
        ("email", pa.string()),
        ("created_at", pa.timestamp("us")),
        ("updated_at", pa.timestamp("us")),
    ],
    "shop.products": [
        ("id", pa.int64()),
        ("sku", pa.string()),
        ("name", pa.string()),
        ("price", pa.decimal128(10, 2)),
        ("updated_at", pa.timestamp("us")),
    ],
    "shop.orders": [
        ("id", pa.int64()),
        ("customer_id", pa.int64()),
        ("status", pa.string()),
        ("created_at", pa.timestamp("us")),
        ("updated_at", pa.timestamp("us")),
    ],
    "shop.order_items": [
        ("id", pa.int64()),
        ("order_id", pa.int64()),
        ("product_id", pa.int64()),
        ("quantity", pa.int32()),
        ("unit_price", pa.decimal128(10, 2)),
        ("updated_at", pa.timestamp("us")),
    ],
}
PRIMARY_KEYS = {table: ["id"] for table in TABLE_SCHEMAS}

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
    return load_settings()


@pytest.fixture
def bronze(settings: Settings) -> BronzeWriter:
    return BronzeWriter(settings)


class FakeMySQLSource(MySQLSource):
    """Stands in for the source database in unit tests: fixed row counts per table, no columns
    to hash, and a last commit `commit_age_seconds` ago (None: unknown, i.e. quiet)."""

    counts: dict[str, int]
    last_commit_epoch: float | None = None

    def count_rows(self, table: str) -> int:
        return self.counts.get(table, 0)

    def column_types(self, table: str) -> list[tuple[str, str, int | None]]:
        return []

    def content_digest(self, table: str, columns: list) -> tuple[int, int]:
        return self.count_rows(table), 0

    def last_commit_time(self, table: str) -> datetime | None:
        if self.last_commit_epoch is None:
            return None
        return datetime.fromtimestamp(self.last_commit_epoch, tz=UTC)

    def query(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError("the fake source answers count_rows only")


class FakeConsumerLag(ConsumerLagSource):
    """Stands in for Kafka in unit tests: per table, seconds and records the bronze writer is
    behind; a table with neither has no topic."""

    seconds: dict[str, float]
    records: dict[str, int]

    def measure(self, tables) -> dict[str, TableLag | str]:
        lags: dict[str, TableLag | str] = {}
        for table in tables:
            topic = f"{self.topic_prefix}.{table}"
            if table not in self.seconds and table not in self.records:
                lags[table] = table_lag(table, topic, self.group, None)
                continue
            records = self.records.get(table, 0)
            lags[table] = TableLag(
                table, topic, self.group, "ok", records, True, records,
                self.seconds.get(table), None, None,
            )  # fmt: skip
        return lags


def consumer_lag(
    seconds: dict[str, float] | None = None, records: dict[str, int] | None = None
) -> FakeConsumerLag:
    return FakeConsumerLag(
        bootstrap_servers="fake:9092",
        group="binlake-bronze",
        topic_prefix="binlake",
        seconds=seconds or {},
        records=records or {},
    )


@pytest.fixture
def fake_mysql() -> Callable[[dict[str, int]], MySQLSource]:
    def make(counts: dict[str, int], commit_age_seconds: float | None = None) -> MySQLSource:
        return FakeMySQLSource(
            host="fake",
            port=0,
            user="fake",
            password="",
            counts=counts,
            last_commit_epoch=None
            if commit_age_seconds is None
            else (datetime.now(UTC) - timedelta(seconds=commit_age_seconds)).timestamp(),
        )

    return make


@pytest.fixture
def resources(settings: Settings, fake_mysql) -> Callable[..., dict[str, Any]]:
    """The code location's resources, with the MySQL source replaced by a fake."""

    def make(
        counts: dict[str, int] | None = None, commit_age_seconds: float | None = None
    ) -> dict[str, Any]:
        return {
            **build_resources(settings),
            MYSQL_SOURCE: fake_mysql(counts or {}, commit_age_seconds),
            CONSUMER_LAG: consumer_lag(),
        }

    return make

"""The freshness table: a real Delta table on a temp lake, replaced whole, its log kept small."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable

from binlake.freshness_table import (
    FRESHNESS_TABLE,
    SCHEMA,
    FreshnessRow,
    freshness_table_uri,
    read_freshness_rows,
    write_freshness_table,
)
from binlake.sql.engine import LakeEngine
from binlake.storage import LakeStorage

T0 = 1_717_236_000.0  # 2024-06-01 10:00:00 UTC

BRONZE = FreshnessRow("bronze", "bronze/shop/orders", ("shop.orders",), T0, 0.0, 60.0, True, T0 + 5)
GOLD = FreshnessRow(
    "gold",
    "gold/shop/orders_by_hour_status",
    ("shop.orders", "shop.order_items"),
    None,
    None,
    300.0,
    True,
    T0 + 5,
)
SILVER_LATE = FreshnessRow(
    "silver", "silver/shop/orders", ("shop.orders",), T0 - 200.5, 205.5, 120.0, False, T0 + 5
)


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """A timestamp as ClickHouse answered it (naive UTC or zoned) in UTC."""
    if moment is None:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_the_uri_is_under_the_lake_root():
    assert FRESHNESS_TABLE == "_health/freshness"
    assert freshness_table_uri("s3://bucket/lake/") == "s3://bucket/lake/_health/freshness"


def test_each_write_replaces_the_table_value_for_value(tmp_path: Path):
    storage = LakeStorage.from_url(str(tmp_path))
    assert read_freshness_rows(storage) is None  # no sensor tick yet
    write_freshness_table(storage, [BRONZE, SILVER_LATE])
    version = write_freshness_table(storage, [BRONZE, GOLD, SILVER_LATE])
    table = DeltaTable(str(tmp_path / "_health" / "freshness"))
    assert version == table.version() == 1
    data = table.to_pyarrow_table()
    assert [(f.name, f.type) for f in data.schema] == [(f.name, f.type) for f in SCHEMA]
    assert data.num_rows == 3
    rows = sorted(data.to_pylist(), key=lambda r: r["layer"])
    assert rows == [
        {
            "layer": "bronze",
            "asset": "bronze/shop/orders",
            "source_tables": "shop.orders",
            "newest_source_commit": utc(T0),
            "lag_seconds": 0.0,
            "slo_seconds": 60.0,
            "passed": True,
            "checked_at": utc(T0 + 5),
        },
        {
            "layer": "gold",
            "asset": "gold/shop/orders_by_hour_status",
            "source_tables": "shop.orders,shop.order_items",
            "newest_source_commit": None,
            "lag_seconds": None,
            "slo_seconds": 300.0,
            "passed": True,
            "checked_at": utc(T0 + 5),
        },
        {
            "layer": "silver",
            "asset": "silver/shop/orders",
            "source_tables": "shop.orders",
            "newest_source_commit": utc(T0 - 200.5),
            "lag_seconds": 205.5,
            "slo_seconds": 120.0,
            "passed": False,
            "checked_at": utc(T0 + 5),
        },
    ]
    assert data.schema.field("checked_at").type == pa.timestamp("us", tz="UTC")
    assert sorted(read_freshness_rows(storage), key=lambda r: r.layer) == [
        BRONZE,
        GOLD,
        SILVER_LATE,
    ]


def test_the_log_and_the_data_files_stay_small(tmp_path: Path):
    storage = LakeStorage.from_url(str(tmp_path))
    versions = []
    for tick in range(25):
        row = FreshnessRow(
            "bronze", "bronze/shop/orders", ("shop.orders",), T0, 0.0, 60.0, True, T0 + tick
        )
        versions.append(
            write_freshness_table(
                storage,
                [row],
                maintenance_every=10,
                file_retention_hours=0,
                log_retention="interval 0 seconds",
            )
        )
    root = tmp_path / "_health" / "freshness"
    log = root / "_delta_log"
    checkpoint = int(next(log.glob("*.checkpoint.parquet")).name.split(".")[0])
    commits = sorted(int(p.stem) for p in log.glob("*.json"))
    # The log starts at the last checkpoint (maintenance adds vacuum's own two commits), and
    # only the files of the versions since then are left.
    assert commits == list(range(checkpoint, versions[-1] + 1))
    assert len(commits) < 10
    assert len(list(root.glob("*.parquet"))) == versions[-1] - checkpoint + 1
    assert [r.checked_at for r in read_freshness_rows(storage)] == [T0 + 24]


def test_the_sql_view_reads_what_the_writer_wrote_value_for_value(settings):
    """``lake.freshness`` in the embedded SQL engine, over the writer's table, after replacements
    and a maintenance pass (vacuum, checkpoint, log cleanup)."""
    storage = LakeStorage.from_settings(settings)
    for _ in range(3):
        write_freshness_table(storage, [BRONZE, GOLD], maintenance_every=2, file_retention_hours=0)
    write_freshness_table(storage, [BRONZE, GOLD, SILVER_LATE])
    engine = LakeEngine(settings)
    try:
        data = engine.query(
            "SELECT layer, asset, source_tables, newest_source_commit, lag_seconds, "
            "slo_seconds, passed, checked_at FROM lake.freshness ORDER BY layer",
            output_format="ArrowStream",
        ).data
    finally:
        engine.close()
    with pa.ipc.open_stream(data) as reader:
        rows = reader.read_all().to_pylist()
    in_utc = [
        {
            **row,
            "newest_source_commit": as_utc(row["newest_source_commit"]),
            "checked_at": as_utc(row["checked_at"]),
        }
        for row in rows
    ]
    assert in_utc == [
        {
            "layer": r.layer,
            "asset": r.asset,
            "source_tables": ",".join(r.source_tables),
            "newest_source_commit": None
            if r.newest_source_commit is None
            else utc(r.newest_source_commit),
            "lag_seconds": r.lag_seconds,
            "slo_seconds": r.slo_seconds,
            "passed": r.passed,
            "checked_at": utc(r.checked_at),
        }
        for r in (BRONZE, GOLD, SILVER_LATE)
    ]

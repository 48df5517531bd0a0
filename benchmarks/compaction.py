#!/usr/bin/env python
"""What compaction buys readers of bronze, and what it costs.

    uv run python benchmarks/compaction.py [--files-per-hour 120] [--rows-per-file 200]
        [--repeat 3]

Writes one day (24 hours) of bronze for `shop.orders` into a temporary lake the way the bronze
worker leaves it under a steady trickle: `--files-per-hour` small zstd Parquet files per hour
(the worker rotates a file every `bronze.flush_seconds`), each of `--rows-per-file` changes with
the 10 provenance columns and an orders-like row (keys inserted and updated again and again), and
one manifest entry per file. Then:

* read the whole day as silver rebuilds and history read it (`BronzeLake.read_table`), best of
  `--repeat`, before compaction;
* compact every hour (`compactor.run.run_compaction`, the code the Dagster job runs): time, rows
  per second, input MB per second;
* read the day again, best of `--repeat`.

Prints the figures and, last, one JSON object: `files_before`, `files_after`, `bytes_before`,
`bytes_after`, `read_before_s`, `read_after_s`, `read_speedup` (before/after),
`compact_s`, `compact_rows_per_s`, `compact_mb_per_s`, `rows`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from binlake.bronze import layout
from binlake.bronze.manifest import Manifest
from binlake.bronze.parquet_format import bronze_schema, to_parquet_bytes
from binlake.settings import Settings, load_settings
from binlake.storage import LakeStorage
from compactor.run import run_compaction
from dagster_defs.resources import BronzeLake
from tests.support.manifest import manifest_entry

TABLE = "shop.orders"
TOPIC = "binlake.shop.orders"
DAY = datetime(2026, 11, 1, tzinfo=UTC)
STATUSES = ["new", "paid", "shipped", "delivered", "cancelled"]
ROW_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("customer_id", pa.int64()),
        ("status", pa.string()),
        ("amount", pa.decimal128(12, 2)),
        ("created_at", pa.timestamp("us")),
        ("updated_at", pa.timestamp("us")),
    ]
)
SCHEMA = bronze_schema(ROW_SCHEMA).with_metadata(
    {layout.META_TABLE: TABLE.encode(), layout.META_PRIMARY_KEY: b'["id"]'}
)


def bronze_file(first_offset: int, rows: int, hour_start: datetime, step_ms: int) -> pa.Table:
    offsets = pl.int_range(first_offset, first_offset + rows, eager=True, dtype=pl.Int64)
    ts = (
        int(hour_start.timestamp() * 1000)
        + (offsets - offsets[0]) * step_ms
        + (first_offset % 1000)
    )
    ids = offsets // 3  # each key inserted, then updated twice
    frame = pl.DataFrame(
        {
            layout.TOPIC: TOPIC,
            layout.PARTITION: pl.Series([0] * rows, dtype=pl.Int32),
            layout.OFFSET: offsets,
            layout.OP: pl.Series(["c", "u", "u"]).gather(offsets % 3),
            layout.SOURCE_FILE: "mysql-bin.000001",
            layout.SOURCE_POS: offsets * 400,
            layout.SOURCE_ROW: pl.Series([0] * rows, dtype=pl.Int32),
            layout.SOURCE_TS_MS: ts,
            layout.SOURCE_SNAPSHOT: "false",
            layout.CAPTURED_TS_MS: ts + 15,
            "id": ids,
            "customer_id": ids % 5_000,
            "status": pl.Series(STATUSES).gather(offsets % len(STATUSES)),
            "amount": ((ids % 100_000) / 100).cast(pl.Decimal(12, 2)),
            "created_at": (ts - (offsets % 3) * 1000)
            .cast(pl.Datetime("ms"))
            .cast(pl.Datetime("us")),
            "updated_at": ts.cast(pl.Datetime("ms")).cast(pl.Datetime("us")),
        }
    )
    return frame.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(SCHEMA)


def write_day(settings: Settings, files_per_hour: int, rows_per_file: int) -> int:
    storage = LakeStorage.from_settings(settings)
    manifest = Manifest(storage)
    offset = 0
    step_ms = 3_600_000 // (files_per_hour * rows_per_file)
    for hour in range(24):
        hour_start = DAY + timedelta(hours=hour)
        bucket = layout.HourBucket.of_millis(int(hour_start.timestamp() * 1000))
        for n in range(files_per_hour):
            table = bronze_file(
                offset,
                rows_per_file,
                hour_start + timedelta(milliseconds=n * rows_per_file * step_ms),
                step_ms,
            )
            path = layout.bronze_file_path(TABLE, bucket, TOPIC, 0, offset)
            data = to_parquet_bytes(table)
            storage.write_atomic(path, data)
            ts = table.column(layout.SOURCE_TS_MS).to_pylist()
            manifest.append(
                manifest_entry(
                    offset,
                    offset + rows_per_file - 1,
                    table=TABLE,
                    topic=TOPIC,
                    path=path,
                    partition_key=bucket.partition_key,
                    bytes=len(data),
                    written_at=max(ts) / 1000 + 1,
                    rotation_reason="seconds",
                    primary_key=["id"],
                    min_source_ts_ms=min(ts),
                    max_source_ts_ms=max(ts),
                )
            )
            offset += rows_per_file
    return offset


def best_read(settings: Settings, repeat: int) -> tuple[float, int]:
    best, rows = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        rows = BronzeLake(storage_url=settings.lake_url).read_table(TABLE).frame.height
        best = min(best, time.perf_counter() - started)
    return best, rows


def live_files(settings: Settings) -> tuple[int, int]:
    entries = Manifest(LakeStorage.from_settings(settings)).entries_for(TABLE)
    return len(entries), sum(e.bytes for e in entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files-per-hour", type=int, default=120)
    parser.add_argument("--rows-per-file", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="binlake-compaction-") as tmp:
        os.environ["BINLAKE_STORAGE_URL"] = str(Path(tmp) / "lake")
        os.environ["BINLAKE_STATE_DIR"] = str(Path(tmp) / "state")
        settings = load_settings()
        rows = write_day(settings, args.files_per_hour, args.rows_per_file)
        files_before, bytes_before = live_files(settings)
        read_before, rows_before = best_read(settings, args.repeat)
        print(
            f"before: {files_before} files, {bytes_before / 1e6:.1f} MB, {rows_before} rows, "
            f"read {read_before:.3f} s"
        )

        report = run_compaction(settings, now=DAY + timedelta(days=2))
        summary = report.summary()
        if report.failed:
            raise SystemExit(f"compaction failed: {summary['failed']}")
        compact_s = sum(c.seconds for c in report.compacted)
        files_after, bytes_after = live_files(settings)
        read_after, rows_after = best_read(settings, args.repeat)
        assert rows_after == rows_before == rows, (rows_before, rows_after, rows)
        print(
            f"compaction: {summary['files_replaced']} files -> {summary['files_written']} in "
            f"{compact_s:.2f} s ({rows / compact_s:,.0f} rows/s, "
            f"{summary['input_bytes'] / 1e6 / compact_s:.1f} MB/s of input)"
        )
        print(
            f"after: {files_after} files, {bytes_after / 1e6:.1f} MB, read {read_after:.3f} s "
            f"({read_before / read_after:.1f}x faster)"
        )
        print(
            json.dumps(
                {
                    "rows": rows,
                    "files_before": files_before,
                    "files_after": files_after,
                    "bytes_before": bytes_before,
                    "bytes_after": bytes_after,
                    "read_before_s": round(read_before, 4),
                    "read_after_s": round(read_after, 4),
                    "read_speedup": round(read_before / read_after, 2),
                    "compact_s": round(compact_s, 3),
                    "compact_rows_per_s": round(rows / compact_s),
                    "compact_mb_per_s": round(summary["input_bytes"] / 1e6 / compact_s, 2),
                }
            )
        )


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""The largest row binlake carries end to end, and how long big rows take to reach silver.

    uv run python benchmarks/large_records.py [--sizes-mb 1,4,8,16,24,31]

Starts a local stack of its own (MariaDB, Kafka, Kafka Connect + Debezium, the Faust bronze
worker, Dagster with its daemon) in a temp state directory on free ports, with the default
`kafka.max_record_bytes` (32 MiB). For each size it inserts one LONGTEXT row of that many bytes
between two small rows and times, from the commit, the row's arrival in bronze (manifest) and in
silver (Dagster's automation). A row whose record exceeds the limit fails the Debezium task: the
benchmark stops there and reports it. Stops the stack by PID at the end.

The last line is one JSON object: per size `to_bronze_s`, `to_silver_s`, and
`largest_carried_bytes`, with whether silver equalled the source value for value at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import string
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.support import free_port_settings
from binlake.bronze.manifest import Manifest
from binlake.demo import lake_checks
from binlake.local_stack.stack import LocalStack
from binlake.source_db import connect_source
from binlake.storage import LakeStorage
from cdc.connect_client import ConnectClient

TABLE = "shop.big_rows"
MB = 1_000_000


def _wait(condition, timeout_s: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            if condition():
                return time.monotonic() - start
        except FileNotFoundError:
            pass
        time.sleep(0.2)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mb", default="1,4,8,16,24,31")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per row")
    parser.add_argument("--keep", action="store_true", help="keep the state directory")
    args = parser.parse_args(argv)
    sizes = [int(float(s) * MB) for s in args.sizes_mb.split(",")]
    state = Path(tempfile.mkdtemp(prefix="binlake-large-records-"))
    settings = free_port_settings(
        state,
        tables=[TABLE],
        dagster={"sensor_interval_seconds": 1, "automation_interval_seconds": 2},
    )
    stack = LocalStack(settings)
    results: list[dict] = []
    rng = random.Random(11)
    try:
        stack.up()
        settings = stack.settings
        manifest = Manifest(LakeStorage.from_settings(settings))
        connect = ConnectClient(settings.connect.url)
        with connect_source(settings, admin=True, database="shop") as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE big_rows (id INT PRIMARY KEY, body LONGTEXT NOT NULL)")
        next_id = 1
        for size in sizes:
            body = "".join(rng.choices(string.ascii_letters, k=size))
            big_id = next_id + 1
            with connect_source(settings, admin=True, database="shop") as conn:
                conn.max_allowed_packet = 64 * 1024 * 1024  # the client's side of the limit
                with conn.cursor() as cur:
                    for row_id, text in ((next_id, "small"), (big_id, body), (big_id + 1, "s")):
                        cur.execute("INSERT INTO big_rows VALUES (%s, %s)", (row_id, text))
            last_id = big_id + 1
            next_id += 3

            def in_bronze(last_id: int = last_id) -> bool:
                rows = sum(e.rows for e in manifest.entries_for(TABLE))
                return rows >= last_id

            to_bronze = _wait(in_bronze, args.timeout)
            failed = connect.get_status(settings.connect.connector_name).is_failed
            to_silver = (
                None
                if to_bronze is None
                else _wait(lambda: lake_checks.silver_equals_source(settings, TABLE), args.timeout)
            )
            row = {
                "bytes": size,
                "to_bronze_s": None if to_bronze is None else round(to_bronze, 2),
                "to_silver_s": None if to_silver is None else round(to_silver + to_bronze, 2),
                "task_failed": failed,
            }
            print(row, file=sys.stderr)
            results.append(row)
            if to_bronze is None:
                break
            del body
    finally:
        stack.down()
        if not args.keep:
            shutil.rmtree(state, ignore_errors=True)
    carried = [r["bytes"] for r in results if r["to_silver_s"] is not None]
    summary = {
        "max_record_bytes": settings.kafka.max_record_bytes,
        "rows": results,
        "largest_carried_bytes": max(carried, default=0),
    }
    print(
        f"largest row carried to silver: {summary['largest_carried_bytes'] / MB:.0f} MB "
        f"(kafka.max_record_bytes = {settings.kafka.max_record_bytes})"
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

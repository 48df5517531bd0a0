#!/usr/bin/env python
"""Resync rate: a table read again by Debezium's incremental snapshot while a write workload runs.

    uv run python benchmarks/resync.py [--rows 1000000] [--writes-per-s 50] [--chunk-size 1024]
        [--keep]

Starts a local stack of its own (MariaDB, Kafka, Kafka Connect + Debezium, the bronze worker; no
Dagster) in a temporary state directory on free ports, creates `shop.resync_bench` with `--rows`
rows written behind the binlog's back (`sql_log_bin = 0`, as a table added to the capture later
looks: the stream never saw them), then runs `binlake.silver.resync` (the code `binlake resync`
runs) while a writer inserts, updates and deletes rows of the table at `--writes-per-s` transactions
per second. Measures, from the signal:

* until Debezium's COMPLETED notification (every chunk read),
* until every re-read row is in Kafka (the fence `binlake.silver.resync.records_delivered` uses),
* until bronze holds them all (the manifest reaches the resync's end offsets),
* then silver: the merge of the table's bronze and the sweep (the code the silver asset runs),

and prints rows per second for each, then one JSON object with the figures. The stack is stopped
(by its supervisor, every process by PID) and the directory removed unless `--keep`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.support import free_port_settings
from binlake.bronze.manifest import Manifest, live_entries
from binlake.local_stack.stack import LocalStack
from binlake.settings import Settings
from binlake.silver.incremental import unconsumed_reads
from binlake.silver.merge_changes import merge_changes
from binlake.silver.pii import PiiPolicy
from binlake.silver.resync import ResyncLog, ResyncProgress, request_resync, wait_for_completion
from binlake.silver.resync_sweep import sweep_resyncs
from binlake.source_db import connect_source
from binlake.storage import LakeStorage
from dagster_defs.resources import BronzeLake, SilverLake

TABLE = "shop.resync_bench"


class Writer(threading.Thread):
    """Transactions on the table through the binlog at a steady rate until stopped."""

    def __init__(self, settings: Settings, rows: int, per_second: float):
        super().__init__(daemon=True)
        self.settings, self.rows, self.interval = settings, rows, 1.0 / per_second
        self.stop = threading.Event()
        self.transactions = 0

    def run(self) -> None:
        next_id = self.rows + 1_000_000
        with connect_source(self.settings, admin=True, database="shop") as conn:
            cur = conn.cursor()
            while not self.stop.is_set():
                began = time.monotonic()
                cur.execute(
                    "INSERT INTO resync_bench VALUES (%s, %s, %s, %s)",
                    (next_id, f"new-{next_id}", 1, "1.25"),
                )
                key = 1 + (next_id * 7919) % self.rows
                cur.execute("UPDATE resync_bench SET qty = qty + 1 WHERE id = %s", (key,))
                if next_id % 4 == 0:
                    cur.execute("DELETE FROM resync_bench WHERE id = %s", (key + 1,))
                next_id += 1
                self.transactions += 1
                time.sleep(max(0.0, self.interval - (time.monotonic() - began)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--writes-per-s", type=float, default=50.0)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--keep", action="store_true", help="Keep the state directory.")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="binlake-resync-bench-"))
    settings = free_port_settings(
        home / "state", tables=[TABLE], resync={"chunk_size": args.chunk_size}
    )
    stack = LocalStack(settings)
    try:
        stack.up(with_dagster=False, progress=lambda m: print(f"  {m}", flush=True))
        settings = stack.settings
        with connect_source(settings, admin=True, database="shop") as conn, conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE resync_bench (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, "
                "qty INT NOT NULL, price DECIMAL(10,2) NOT NULL)"
            )
            cur.execute("SET SESSION sql_log_bin = 0")
            cur.execute(
                "INSERT INTO resync_bench SELECT seq, CONCAT('name-', seq), seq % 1000, "
                f"(seq % 10000) + 0.25 FROM seq_1_to_{args.rows}"
            )
        print(
            f"{args.rows} rows behind the binlog's back; resync with a writer running", flush=True
        )
        writer = Writer(settings, args.rows, args.writes_per_s)
        writer.start()
        began = time.monotonic()
        request = request_resync(settings, TABLE, reason="benchmark")

        def show(progress: ResyncProgress) -> None:
            print(
                f"  {time.monotonic() - began:6.1f} s: read up to key "
                f"{progress.last_processed_key} of {progress.maximum_key}"
                + (f", {progress.finished}" if progress.finished else ""),
                flush=True,
            )

        completion = wait_for_completion(
            settings, request, timeout_s=7200, poll_s=5, on_progress=show
        )
        in_kafka_s = time.monotonic() - began
        storage = LakeStorage.from_settings(settings)

        def bronze_holds_end() -> bool:
            entries = live_entries(Manifest(storage).entries_for(TABLE))
            return all(
                max((e.last_offset for e in entries if e.partition == p), default=-1) >= end - 1
                for p, end in completion.end_offsets.items()
            )

        while not bronze_holds_end():
            time.sleep(1)
        in_bronze_s = time.monotonic() - began
        writer.stop.set()
        writer.join()

        target = SilverLake(storage_url=settings.lake_url).table(TABLE)
        bronze = BronzeLake(storage_url=settings.lake_url)
        pii = PiiPolicy.from_settings(settings.silver)
        silver_began = time.monotonic()
        consumed = target.consumed()
        for read in unconsumed_reads(bronze.reader(), TABLE, consumed):
            if read.frame.height:
                merge_changes(target, TABLE, read.frame, read.primary_key, consumed, pii)
        merged_s = time.monotonic() - silver_began
        sweep_began = time.monotonic()
        sweeps = sweep_resyncs(storage, target, TABLE, log=print)
        silver_s = merged_s + time.monotonic() - sweep_began
        state = ResyncLog(storage).state(TABLE, request.id)
        rows = completion.rows_scanned or 0
        debezium_s = state.completion.completed_at if state.completion else ""
        figures = {
            "rows": args.rows,
            "rows_scanned": rows,
            "chunk_size": args.chunk_size,
            "writer_transactions": writer.transactions,
            "all_in_kafka_s": round(in_kafka_s, 1),
            "all_in_bronze_s": round(in_bronze_s, 1),
            "rows_per_s_to_kafka": round(rows / in_kafka_s),
            "rows_per_s_to_bronze": round(rows / in_bronze_s),
            "silver_merge_s": round(merged_s, 1),
            "silver_merge_and_sweep_s": round(silver_s, 1),
            "swept": bool(sweeps and sweeps[0].swept),
            "keys_seen": state.sweep.keys_seen if state.sweep else None,
            "debezium_completed_at": debezium_s,
            "requested_at": request.requested_at,
        }
        print(
            f"resync of {rows} rows: all in Kafka after {in_kafka_s:.1f} s "
            f"({figures['rows_per_s_to_kafka']} rows/s), in bronze after {in_bronze_s:.1f} s "
            f"({figures['rows_per_s_to_bronze']} rows/s), {writer.transactions} writer "
            f"transactions meanwhile; silver merge {merged_s:.1f} s, + sweep {silver_s:.1f} s"
        )
        print(json.dumps(figures))
    finally:
        stack.down()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()

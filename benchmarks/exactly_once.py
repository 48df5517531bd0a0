#!/usr/bin/env python
"""Records re-sent after a Kafka Connect SIGKILL mid-insert, with exactly-once source delivery
(KIP-618) and without, in one run.

    uv run python benchmarks/exactly_once.py [--batches 60] [--rows-per-batch 1000]
        [--modes exactly-once,at-least-once] [--keep]

For each mode, `BINLAKE_CONNECT__EXACTLY_ONCE` set to true or false, starts a local stack of its
own (MariaDB, the KRaft broker, Kafka Connect + Debezium's MariaDB connector, the bronze worker;
no Dagster) in a temporary state directory on free ports, creates `eosbench.events`, and while a
thread inserts `--batches` batches of `--rows-per-batch` rows (one transaction per batch, 0.25 s
apart) SIGKILLs the Connect JVM (its PID from supervisord) once bronze holds the first rows.
supervisord restarts Connect, Debezium resumes from its last committed source offset. Once bronze
holds every row, the topic is read from the start twice, as a `read_committed` reader (what the
bronze worker sees) and as a `read_uncommitted` one (which also gets the records of transactions
the killed worker never committed), and for each reader and for bronze it counts the change
records that repeat a change already read (same binlog file, position, row and key).

Prints one line per mode and reader, then one JSON object with the figures. Each stack is stopped
(by its supervisor, every process by PID) and its directory removed unless `--keep`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import polars as pl

from benchmarks.support import free_port_settings, temporary_state
from binlake.bronze.manifest import Manifest
from binlake.demo.delivery_checks import copies, read_topic
from binlake.local_stack import components
from binlake.local_stack.stack import LocalStack
from binlake.settings import Settings
from binlake.source_db import connect_source
from binlake.storage import LakeStorage

DB = "eosbench"
TABLE = f"{DB}.events"
LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] ")
MODES = {"exactly-once": True, "at-least-once": False}


def bronze_rows(settings: Settings) -> pl.DataFrame:
    storage = LakeStorage.from_settings(settings)
    frames = [
        pl.read_parquet(storage.full_path(entry.path))
        for entry in Manifest(storage).entries_for(TABLE)
    ]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def wait_for(what: str, condition, timeout_s: float) -> float:
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout_s:
            raise SystemExit(f"{what}: not reached after {timeout_s} s")
        time.sleep(0.5)
    return time.monotonic() - began


def connect_state(stack: LocalStack):
    return next(s for s in stack.components() if s.name == components.CONNECT)


def streaming_again_after(connect_log: Path, killed: datetime) -> float | None:
    """Seconds from the kill to Debezium's next "Connected to binlog" (Connect's log), or None."""
    for line in connect_log.read_text(errors="replace").splitlines():
        match = LOG_LINE.match(line)
        if match and "Connected to binlog at" in line:
            at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            if at > killed:
                return round((at - killed).total_seconds(), 1)
    return None


def run_mode(name: str, exactly_once: bool, args: argparse.Namespace) -> dict:
    os.environ["BINLAKE_CONNECT__EXACTLY_ONCE"] = "true" if exactly_once else "false"

    def say(text: str) -> None:
        print(f"[{name}] {text}")

    with temporary_state(f"binlake-eos-{name}-", args.keep, say) as state_dir:
        settings = free_port_settings(
            state_dir,
            tables=[TABLE],
            mysql={"databases": [DB]},
            bronze={"flush_seconds": 1.0, "flush_rows": 5000},
        )
        assert settings.connect.exactly_once is exactly_once
        stack = LocalStack(settings)
        try:
            stack.up(with_dagster=False)
            return measure(name, stack, stack.settings, args)
        finally:
            stack.down()


def measure(name: str, stack: LocalStack, settings: Settings, args: argparse.Namespace) -> dict:
    total = args.batches * args.rows_per_batch
    with connect_source(settings, admin=True, database=DB) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE events (id BIGINT PRIMARY KEY, batch INT NOT NULL, "
            "payload VARCHAR(64) NOT NULL, created_at DATETIME(6) NOT NULL)"
        )
    inserted = threading.Event()

    def bulk_insert() -> None:
        try:
            with connect_source(settings, admin=True, database=DB) as conn, conn.cursor() as cur:
                for batch in range(args.batches):
                    rows = [
                        (batch * args.rows_per_batch + i, batch, f"row-{batch}-{i}")
                        for i in range(args.rows_per_batch)
                    ]
                    cur.executemany("INSERT INTO events VALUES (%s, %s, %s, NOW(6))", rows)
                    time.sleep(0.25)
        finally:
            inserted.set()

    before = connect_state(stack)
    began = time.monotonic()
    inserter = threading.Thread(target=bulk_insert, daemon=True)
    inserter.start()
    wait_for("first rows in bronze", lambda: bronze_rows(settings).height > 0, 120)
    if inserted.is_set():
        raise SystemExit("the insert finished before Connect could be killed; add --batches")
    in_bronze_at_kill = bronze_rows(settings).height
    killed_wall = datetime.now()  # Connect logs local time
    os.kill(before.pid, signal.SIGKILL)
    killed_at = time.monotonic() - began
    restart_s = wait_for(
        "Connect restarted",
        lambda: (s := connect_state(stack)).state == "RUNNING" and s.pid != before.pid,
        60,
    )
    inserter.join(600)
    insert_s = time.monotonic() - began
    since_insert = time.monotonic()
    wait_for("every row in bronze", lambda: bronze_rows(settings)["id"].n_unique() == total, 900)
    catch_up_s = time.monotonic() - since_insert
    bronze = bronze_rows(settings)
    resumed = streaming_again_after(stack.supervisor.log_file(components.CONNECT), killed_wall)
    topic = settings.topic_for(TABLE)
    readers = {
        isolation: copies(read_topic(settings.kafka.bootstrap_servers, topic, isolation))
        for isolation in ("read_committed", "read_uncommitted")
    }
    readers["bronze"] = copies(bronze, ["id"])
    for reader, counted in readers.items():
        print(f"[{name}] {reader:>16}: {counted.describe()}")
    return {
        "mode": name,
        "rows": total,
        "killed_at_s": round(killed_at, 1),
        "bronze_rows_at_kill": in_bronze_at_kill,
        "connect_running_again_s": round(restart_s, 1),
        "binlog_streaming_again_s": resumed,
        "insert_s": round(insert_s, 1),
        "bronze_complete_after_insert_s": round(catch_up_s, 1),
        "readers": {reader: asdict(counted) for reader, counted in readers.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--rows-per-batch", type=int, default=1000)
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated, of: " + ", ".join(MODES)
    )
    parser.add_argument("--keep", action="store_true", help="keep each stack's state directory")
    args = parser.parse_args()
    results = [run_mode(name, MODES[name], args) for name in args.modes.split(",")]
    print()
    print(
        f"{'mode':<14} {'re-sent (read_committed)':>25} {'re-sent (read_uncommitted)':>27} "
        f"{'re-sent in bronze':>18} {'binlog read again after kill':>29}"
    )
    for result in results:
        readers = result["readers"]
        print(
            f"{result['mode']:<14} {readers['read_committed']['resent']:>25} "
            f"{readers['read_uncommitted']['resent']:>27} {readers['bronze']['resent']:>18} "
            f"{result['binlog_streaming_again_s']!s:>27} s"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Binlog CDC (binlake) against a cron + `MAX(updated_at)` watermark extractor, on one workload.

    uv run python benchmarks/cdc_vs_watermark.py [--duration 60] [--rate 20]
                                                  [--watermark-interval 15] [--no-dagster]

Starts a local stack of its own (MariaDB, Kafka, Kafka Connect + Debezium, the Faust bronze
worker and, unless `--no-dagster`, the Dagster webserver and daemon) in a temp state directory on
free ports, creates the demo's `shop` tables, and starts a watermark extractor thread: the job
binlake replaces, a cron run every `--watermark-interval` seconds (standing in for a nightly or
hourly schedule, scaled down) that, per table, runs

    SELECT * FROM shop.<table> WHERE updated_at > %s ORDER BY updated_at

with the watermark = the largest `updated_at` it has extracted so far (its first run has no
watermark and reads the whole table: that initial load happens before any row exists, as
Debezium's snapshot did). Every shop table has `updated_at DATETIME(6)`, set by the workload on
every insert and update, and there is no index on it. The extractor logs in as a user of its own,
`binlake_watermark`, so the server can count what it read.

Then the demo's shop workload runs (inserts, order status changes, price changes, deletes of
orders with their items: `--rate` transactions a second for `--duration` seconds, after a seeded
warm-up that is left out of the figures), the extractor keeps its schedule until its first run
that starts after the workload ended, and the script waits until bronze holds every change.

Ground truth is the workload's own record of what it committed: (table, key, op, updated_at, time
right after COMMIT returned) for every row inserted, updated or deleted in the timed window.
Per system, and printed side by side:

* `deletes_captured` / `deletes_total`: deleted rows (orders and their items). binlake: a `d` row
  for that key in bronze. Watermark: a delete is captured only if an extracted row tells the key
  is gone, i.e. a soft-delete column (`deleted`, `is_deleted`, `deleted_at`, ...) set in an
  extracted version; the script looks for such columns in the source's information_schema (the
  shop tables have none and the workload deletes rows for real), so incremental queries cannot
  see a delete. Noticing deletes would take a full key comparison with the source, not modelled.
* `updates_captured` / `updates_total`: committed updates, each identified by (table, key,
  updated_at). binlake: a bronze row with that key and updated_at (a `u`). Watermark: some run
  returned that version. `superseded_updates_*` counts the same for the updates followed by a
  later change to the same key in the run: the intermediate versions, which a run sees only if it
  happens to fall between the two changes. `inserts_*` likewise for inserted versions.
* `max_staleness_s`: over the changes the system captured, the longest time from COMMIT to the
  moment the system held it. binlake: the manifest `written_at` of the first bronze file holding
  the change (durable in the lake, as `binlake.demo.latency` measures commit-to-bronze); deletes
  included. Watermark: the end of the first run that returned the version (the rows are in the
  job's memory; writing them anywhere would add to it, so this is a lower bound). Changes never
  captured are not in the maximum; they are counted in `changes_not_captured`.
  `p50_staleness_s` beside it. Silver and gold are not measured here (`commit_to_gold.py`).
* `source_rows_read`: rows returned to the system by queries to the source tables. Watermark:
  every row its runs returned, from its first run on (the warm-up's seeded rows included; the
  initial load itself, run on the empty tables, is `initial_load_rows`). binlake: the rows
  Debezium's snapshot read at connector start (`r` rows in bronze; the shop tables are created
  after the stack is up, so it reads none); after the snapshot Debezium does not query tables,
  it streams the binlog (`binlog_rows_streamed`: c/u/d rows in bronze, warm-up included).
  `source_rows_examined`: rows the server read on the system's behalf, from MariaDB's
  USER_STATISTICS (`userstat`, switched on once the stack is up, so after Debezium's snapshot;
  warm-up included) for its login: ROWS_READ, rows read by the storage engine. For the
  watermark it shows the full table scans behind each incremental query (no index on
  updated_at). For binlake the login `cdc` is shared by Debezium and the Dagster reconciliation
  checks, which count and hash each source table after silver updates: those scans are binlake
  reading the source too, and they are in this figure (none without Dagster).

The workload has one writer, so `updated_at` grows in commit order and the strict watermark
loses no row committed late with an older `updated_at`; with concurrent writers it can.
Stops the stack by PID at the end and removes the state directory unless `--keep`. The last line
is one JSON object with keys `binlake` and `watermark`, each holding the figures above.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from rich.console import Console

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import polars as pl
import pymysql

from benchmarks.support import on_a_stack_of_its_own
from binlake.bronze.layout import OP
from binlake.bronze.manifest import Manifest
from binlake.demo.latency import percentile
from binlake.demo.shop_schema import SHOP_DDL, SHOP_TABLES
from binlake.demo.workload import ShopWorkload
from binlake.local_stack.stack import LocalStack
from binlake.settings import Settings
from binlake.source_db import connect_source
from binlake.storage import LakeStorage

DATABASE = "shop"
WATERMARK_USER = "binlake_watermark"
WATERMARK_PASSWORD = "binlake_watermark"
SOFT_DELETE_COLUMNS = ("deleted", "is_deleted", "deleted_at", "_deleted", "is_active", "active")

VersionKey = tuple[str, int, datetime]  # (<db>.<table>, id, updated_at)
RowKey = tuple[str, int]  # (<db>.<table>, id)


@dataclass(frozen=True)
class Change:
    """One row changed by one committed transaction of the workload."""

    table: str  # <db>.<table>
    key: int
    op: str  # c, u or d
    updated_at: datetime | None  # the version written; None for a delete
    committed_at: float  # epoch seconds right after COMMIT returned


# ---------------------------------------------------------------------------------------------
# Scoring (pure)


def superseded(changes: Iterable[Change]) -> set[int]:
    """Indexes (in `changes`) of the changes followed by a later change to the same row."""
    last: dict[RowKey, int] = {}
    later: set[int] = set()
    for index, change in enumerate(changes):
        row = (change.table, change.key)
        if row in last:
            later.add(last[row])
        last[row] = index
    return later


def score(
    changes: list[Change],
    versions: Mapping[VersionKey, float],
    deletes: Mapping[RowKey, float],
) -> dict[str, int | float | None]:
    """What a system captured of `changes`, given when it first held each version and delete.

    `versions` maps (table, key, updated_at) and `deletes` maps (table, key) to the epoch second
    the system first held it.
    """
    totals = {"c": 0, "u": 0, "d": 0}
    captured = {"c": 0, "u": 0, "d": 0}
    superseded_total = superseded_captured = 0
    later = superseded(changes)
    staleness: list[float] = []
    for index, change in enumerate(changes):
        totals[change.op] += 1
        if change.op == "d":
            held = deletes.get((change.table, change.key))
        else:
            held = versions.get((change.table, change.key, change.updated_at))
        if change.op == "u" and index in later:
            superseded_total += 1
            superseded_captured += held is not None
        if held is None:
            continue
        captured[change.op] += 1
        staleness.append(held - change.committed_at)
    return {
        "deletes_captured": captured["d"],
        "deletes_total": totals["d"],
        "updates_captured": captured["u"],
        "updates_total": totals["u"],
        "superseded_updates_captured": superseded_captured,
        "superseded_updates_total": superseded_total,
        "inserts_captured": captured["c"],
        "inserts_total": totals["c"],
        "max_staleness_s": _rounded(max(staleness)) if staleness else None,
        "p50_staleness_s": _rounded(percentile(staleness, 0.5)),
        "changes_not_captured": len(changes) - len(staleness),
    }


def soft_deleted_rows(
    rows: Iterable[tuple[str, int, Mapping[str, object], float]], columns: Iterable[str]
) -> dict[RowKey, float]:
    """(table, key) -> first time an extracted version carried a set soft-delete column."""
    columns = list(columns)
    seen: dict[RowKey, float] = {}
    for table, key, row, at in rows:
        if any(row.get(column) not in (None, 0, False) for column in columns):
            seen.setdefault((table, key), at)
    return seen


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# ---------------------------------------------------------------------------------------------
# The workload, recording deletes and ops as well


class RecordedWorkload(ShopWorkload):
    """The demo's shop workload, recording every changed row with its op, deletes included."""

    def __init__(self, connection: pymysql.Connection, database: str = DATABASE, seed: int = 7):
        super().__init__(connection, database, seed)
        self.recorded: list[Change] = []

    def record_committed(self, touched: list, committed_at: float) -> None:
        # touched rows carry their op here (the _new_* and other actions below tag them)
        self.recorded.extend(
            Change(f"{self.db}.{table}", key, op, updated_at, committed_at)
            for table, key, updated_at, op in touched
        )

    def _new_customer(self, cur):
        return _tagged(super()._new_customer(cur), "c")

    def _new_product(self, cur):
        return _tagged(super()._new_product(cur), "c")

    def _new_order(self, cur):
        return _tagged(super()._new_order(cur), "c")

    def _advance_order(self, cur):
        return _tagged(super()._advance_order(cur), "u")

    def _reprice_product(self, cur):
        return _tagged(super()._reprice_product(cur), "u")

    def _delete_order(self, cur):
        # As ShopWorkload._delete_order (same random draws), also naming the deleted items.
        order_id = self._orders.pop(self.rng.randrange(len(self._orders)))
        cur.execute("SELECT id FROM order_items WHERE order_id = %s FOR UPDATE", (order_id,))
        item_ids = [row[0] for row in cur.fetchall()]
        items = cur.execute("DELETE FROM order_items WHERE order_id = %s", (order_id,))
        cur.execute("DELETE FROM orders WHERE id = %s", (order_id,))
        self.counts.deletes += 1 + items
        return [("order_items", i, None, "d") for i in item_ids] + [("orders", order_id, None, "d")]


def _tagged(touched: list[tuple[str, int, datetime]], op: str) -> list[tuple]:
    return [(table, key, updated_at, op) for table, key, updated_at in touched]


# ---------------------------------------------------------------------------------------------
# The watermark extractor


@dataclass
class Run:
    started_at: float
    ended_at: float
    rows: int


@dataclass
class WatermarkExtractor:
    """A cron job extracting `updated_at > watermark` from every table every `interval_s`."""

    settings: Settings
    tables: list[str]  # <db>.<table>
    interval_s: float
    soft_delete_columns: dict[str, list[str]] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    versions: dict[VersionKey, float] = field(default_factory=dict)  # first run end holding it
    soft_deletes: list[tuple[str, int, dict, float]] = field(default_factory=list)
    watermarks: dict[str, datetime | None] = field(default_factory=dict)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._last_run_after: float | None = None
        self._wake = threading.Event()
        self._first_run_done = threading.Event()
        self._thread = threading.Thread(target=self._main, name="watermark-extractor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_for_first_run(self, timeout_s: float) -> None:
        """Wait until the first run (the initial load) has finished."""
        if not self._first_run_done.wait(timeout_s) and self.error is None:
            raise TimeoutError("the watermark extractor's first run did not finish")
        if self.error is not None:
            raise self.error

    def stop_after(self, after: float) -> None:
        """Make the first scheduled run that starts at or after epoch second `after` the last."""
        self._last_run_after = after

    def finish(self, timeout_s: float) -> None:
        """Wait for the last run (see `stop_after`)."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError("the watermark extractor did not finish its last run")
        if self.error is not None:
            raise self.error

    @property
    def rows_read(self) -> int:
        return sum(run.rows for run in self.runs)

    def _main(self) -> None:
        try:
            conn = pymysql.connect(
                host=self.settings.mysql.host,
                port=self.settings.mysql.port,
                user=WATERMARK_USER,
                password=WATERMARK_PASSWORD,
                autocommit=True,  # every query sees the latest commits
                connect_timeout=5,
            )
            with conn:
                began = time.monotonic()
                scheduled = 0
                while True:
                    started = time.time()
                    self._run_once(conn)
                    self._first_run_done.set()
                    if self._last_run_after is not None and started >= self._last_run_after:
                        return
                    scheduled += 1
                    # Like cron: the next run is on the schedule, however long this one took.
                    self._wake.wait(
                        max(0.0, began + scheduled * self.interval_s - time.monotonic())
                    )
        except Exception as exc:  # noqa: BLE001 - re-raised by finish()
            self.error = exc
            self._first_run_done.set()

    def _run_once(self, conn: pymysql.Connection) -> None:
        started = time.time()
        extracted: list[tuple[str, int, dict]] = []
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            for table in self.tables:
                db, name = table.split(".")
                watermark = self.watermarks.get(table)
                if watermark is None:  # the initial load
                    cur.execute(f"SELECT * FROM `{db}`.`{name}` ORDER BY updated_at")
                else:
                    cur.execute(
                        f"SELECT * FROM `{db}`.`{name}` WHERE updated_at > %s ORDER BY updated_at",
                        (watermark,),
                    )
                rows = cur.fetchall()
                if rows:
                    self.watermarks[table] = max(row["updated_at"] for row in rows)
                extracted.extend((table, row["id"], row) for row in rows)
        ended = time.time()
        self.runs.append(Run(started, ended, len(extracted)))
        for table, key, row in extracted:
            self.versions.setdefault((table, key, row["updated_at"]), ended)
            if self.soft_delete_columns.get(table):
                self.soft_deletes.append((table, key, row, ended))


def _soft_delete_columns(settings: Settings, tables: list[str]) -> dict[str, list[str]]:
    """Per table, the columns whose name says they mark a row deleted (none in the shop)."""
    found: dict[str, list[str]] = {}
    with connect_source(settings, admin=True) as conn, conn.cursor() as cur:
        for table in tables:
            db, name = table.split(".")
            cur.execute(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS"
                " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (db, name),
            )
            found[table] = [c for (c,) in cur.fetchall() if c.lower() in SOFT_DELETE_COLUMNS]
    return found


# ---------------------------------------------------------------------------------------------
# binlake's side: bronze, read incrementally through the manifest


class BronzeIndex:
    """When each row version and delete first became durable in bronze."""

    def __init__(self, settings: Settings, tables: list[str]):
        self.storage = LakeStorage.from_settings(settings)
        self.manifest = Manifest(self.storage)
        self.tables = set(tables)
        self.cursor = 0
        self.versions: dict[VersionKey, float] = {}
        self.deletes: dict[RowKey, float] = {}
        self.rows_by_op: dict[str, int] = {}

    def refresh(self) -> None:
        entries, self.cursor = self.manifest.read_since(self.cursor)
        for entry in entries:
            if entry.table not in self.tables:
                continue
            path = self.storage.full_path(entry.path)
            columns = [c for c in ("id", "updated_at", OP) if c in pl.read_parquet_schema(path)]
            frame = pl.read_parquet(path, columns=columns)
            if "updated_at" not in columns:  # tombstones only: key columns
                frame = frame.with_columns(pl.lit(None).alias("updated_at"))
            for key, updated_at, op in frame.select("id", "updated_at", OP).iter_rows():
                self.rows_by_op[op] = self.rows_by_op.get(op, 0) + 1
                if op in ("c", "u", "r") and updated_at is not None:
                    marker = (entry.table, key, updated_at)
                    self.versions[marker] = min(
                        self.versions.get(marker, entry.written_at), entry.written_at
                    )
                elif op == "d":
                    row = (entry.table, key)
                    self.deletes[row] = min(
                        self.deletes.get(row, entry.written_at), entry.written_at
                    )

    def missing(self, changes: Iterable[Change]) -> int:
        """How many of `changes` bronze does not hold yet."""
        return sum(
            (c.table, c.key) not in self.deletes
            if c.op == "d"
            else (c.table, c.key, c.updated_at) not in self.versions
            for c in changes
        )

    def wait_for(
        self, changes: list[Change], timeout_s: float, console: Console, phase: str
    ) -> float | None:
        """Seconds until bronze holds every change, or None on timeout."""
        began = time.monotonic()
        with console.status(f"{phase}: waiting for bronze") as status:
            while True:
                self.refresh()
                missing = self.missing(changes)
                if not missing:
                    return round(time.monotonic() - began, 1)
                if time.monotonic() - began > timeout_s:
                    console.print(
                        f"[red]{phase}: {missing} changes not in bronze after "
                        f"{timeout_s:.0f} s[/red]"
                    )
                    return None
                status.update(
                    f"{phase}: {missing} changes not in bronze yet "
                    f"({time.monotonic() - began:.0f} s)"
                )
                time.sleep(1)


# ---------------------------------------------------------------------------------------------
# Server-side rows read, per login (MariaDB userstat)


def _enable_userstat(settings: Settings) -> bool:
    with connect_source(settings, admin=True) as conn, conn.cursor() as cur:
        try:
            cur.execute("SET GLOBAL userstat = ON")
        except pymysql.err.MySQLError:
            return False
    return True


def _rows_read_by_user(settings: Settings) -> dict[str, int]:
    with connect_source(settings, admin=True) as conn, conn.cursor() as cur:
        try:
            cur.execute("SELECT USER, ROWS_READ FROM information_schema.USER_STATISTICS")
        except pymysql.err.MySQLError:
            return {}
        return {str(user): int(rows) for user, rows in cur.fetchall()}


def _create_watermark_user(settings: Settings) -> None:
    with connect_source(settings, admin=True) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s",
            (WATERMARK_USER, WATERMARK_PASSWORD),
        )
        cur.execute(f"GRANT SELECT ON `{DATABASE}`.* TO %s@'%%'", (WATERMARK_USER,))


# ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    binlake: dict
    watermark: dict
    transactions: int


def run(settings: Settings, args: argparse.Namespace, console: Console) -> Outcome:
    stack = LocalStack(settings)
    with console.status("starting the stack") as status:
        stack.up(with_dagster=not args.no_dagster, progress=status.update)
    settings = stack.settings
    tables = [f"{DATABASE}.{name}" for name in SHOP_TABLES]
    userstat = _enable_userstat(settings)
    _create_watermark_user(settings)
    bronze = BronzeIndex(settings, tables)

    with connect_source(settings, admin=True, database=DATABASE) as conn:
        with conn.cursor() as cur:
            for ddl in SHOP_DDL:
                cur.execute(ddl)
        extractor = WatermarkExtractor(
            settings, tables, args.watermark_interval, _soft_delete_columns(settings, tables)
        )
        extractor.start()
        extractor.wait_for_first_run(timeout_s=60)  # the initial load, of empty tables
        workload = RecordedWorkload(conn, seed=args.seed)
        # Warm-up: the first change of a table creates its topic, which the bronze worker must
        # discover and join; timing starts once bronze holds the seeded rows.
        workload.seed_catalogue()
        bronze.wait_for(workload.recorded, args.catch_up_timeout, console, "warm-up")
        workload.recorded.clear()
        console.print(f"workload: {args.duration:g} s at {args.rate:g} transactions/s")
        seeded = workload.counts.transactions
        workload.run(args.duration, args.rate, tick=lambda elapsed: None)
        extractor.stop_after(time.time())
    transactions = workload.counts.transactions - seeded
    changes = list(workload.recorded)
    console.print(
        f"workload: {transactions} transactions, {len(changes)} row "
        "changes; waiting for the extractor's next run and for bronze"
    )
    caught_up = bronze.wait_for(changes, args.catch_up_timeout, console, "catch-up")
    extractor.finish(timeout_s=args.watermark_interval + 120)
    rows_examined = _rows_read_by_user(settings) if userstat else {}

    watermark = score(
        changes,
        extractor.versions,
        soft_deleted_rows(
            extractor.soft_deletes,
            sorted({c for columns in extractor.soft_delete_columns.values() for c in columns}),
        ),
    )
    watermark.update(
        source_rows_read=extractor.rows_read,
        source_rows_examined=rows_examined.get(WATERMARK_USER),
        initial_load_rows=extractor.runs[0].rows if extractor.runs else 0,
        runs=len(extractor.runs),
        interval_s=args.watermark_interval,
        soft_delete_columns=[c for cs in extractor.soft_delete_columns.values() for c in cs],
    )
    binlake = score(changes, bronze.versions, bronze.deletes)
    binlake.update(
        source_rows_read=bronze.rows_by_op.get("r", 0),
        source_rows_examined=rows_examined.get(settings.mysql.user),
        binlog_rows_streamed=sum(bronze.rows_by_op.get(op, 0) for op in ("c", "u", "d")),
        caught_up_after_s=caught_up,
        with_dagster=not args.no_dagster,
    )
    return Outcome(binlake, watermark, transactions)


def _print_side_by_side(outcome: Outcome, args: argparse.Namespace) -> None:
    b, w = outcome.binlake, outcome.watermark

    def ratio(figures: dict, name: str) -> str:
        return f"{figures[name + '_captured']}/{figures[name + '_total']}"

    def staleness(figures: dict) -> str:
        return f"{figures['max_staleness_s']} (p50 {figures['p50_staleness_s']})"

    lines = [
        ("", "binlake", f"watermark (every {args.watermark_interval:g} s)"),
        ("deletes captured", ratio(b, "deletes"), ratio(w, "deletes")),
        ("updates captured", ratio(b, "updates"), ratio(w, "updates")),
        (
            "  intermediate (superseded)",
            ratio(b, "superseded_updates"),
            ratio(w, "superseded_updates"),
        ),
        ("inserts captured", ratio(b, "inserts"), ratio(w, "inserts")),
        ("max staleness, s", staleness(b), staleness(w)),
        ("changes never captured", str(b["changes_not_captured"]), str(w["changes_not_captured"])),
        ("rows read from source", str(b["source_rows_read"]), str(w["source_rows_read"])),
        ("rows examined by server", str(b["source_rows_examined"]), str(w["source_rows_examined"])),
    ]
    print(
        f"workload: {outcome.transactions} transactions over {args.duration:g} s "
        f"({args.rate:g}/s), seed {args.seed}"
    )
    for label, left, right in lines:
        print(f"{label:<30} {left:>22} {right:>28}")
    print(
        "notes: staleness is commit to durable in bronze (binlake) or commit to the end of the "
        "first extraction run returning the version (watermark), over captured changes only; "
        f"watermark rows read include its initial load ({w['initial_load_rows']} rows, "
        f"{w['runs']} runs); binlake rows read are Debezium snapshot rows, the binlog streamed "
        f"{b['binlog_rows_streamed']} change rows; rows examined are MariaDB USER_STATISTICS "
        "ROWS_READ per login (binlake's login is shared with the Dagster reconciliation checks"
        f"{', running' if b['with_dagster'] else ', not running'}); soft-delete columns found: "
        f"{w['soft_delete_columns'] or 'none'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="workload seconds")
    parser.add_argument("--rate", type=float, default=20.0, help="transactions per second")
    parser.add_argument(
        "--watermark-interval",
        type=float,
        default=15.0,
        help="seconds between watermark extraction runs (the cron schedule)",
    )
    parser.add_argument("--catch-up-timeout", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--no-dagster",
        action="store_true",
        help="start no Dagster webserver and daemon (no silver, gold, checks)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the state directory")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    outcome = on_a_stack_of_its_own(
        "binlake-cdc-vs-watermark-",
        args.keep,
        console.print,
        lambda settings: run(settings, args, console),
    )
    _print_side_by_side(outcome, args)
    print(json.dumps({"binlake": outcome.binlake, "watermark": outcome.watermark}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

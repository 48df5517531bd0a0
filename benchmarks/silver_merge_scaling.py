#!/usr/bin/env python
"""Does a silver MERGE cost what is merged, or what is stored?

    uv run python benchmarks/silver_merge_scaling.py [--small 100000] [--large 10000000]
        [--changes 10000] [--repeat 3]

Builds two silver Delta tables of an orders-like table (13 columns with provenance), written in
key order as the bronze-fed silver tables grow (keys arrive roughly in insert order), one of
`--small` and one of `--large` rows, and merges the same `--changes` changes into a fresh copy
of each with `SilverDeltaTable.merge` (the code the silver asset runs). Two kinds of change
batch are timed, because MERGE's cost depends on which stored files hold the keys it touches:

* `recent`: half inserts of new keys, half updates and deletes of keys among the newest 1% of
  the table: the usual shape of a CDC batch (new orders and the orders still moving);
* `uniform`: the same counts, but the updated and deleted keys are spread over the whole table
  (a backfill, a mass price update).

Each time is the best of `--repeat` runs on a fresh copy of the table. Prints a line per case
and, last, one JSON object with `small_s` and `large_s` (the `recent` batch, the goal's case),
`ratio` = large/small (goal: at most 2), and the `uniform` figures beside them.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from deltalake import CommitProperties, write_deltalake

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from binlake.bronze.layout import OFFSET, OP, SOURCE_FILE, SOURCE_POS, SOURCE_ROW, SOURCE_TS_MS
from binlake.silver.consumed import COMMIT_METADATA_KEY, ConsumedOffsets
from binlake.silver.delta_table import DELETED, SilverDeltaTable

STATUSES = ["new", "paid", "shipped", "delivered", "cancelled"]
BASE_MS = 1_795_255_200_000
TARGET_FILE_BYTES = 64 * 1024 * 1024
ROWS_PER_FILE = 100_000


def orders(ids: pl.Series, first_pos: int, *, op: str = "c", seed: int = 0) -> pl.DataFrame:
    """Order rows for keys `ids`; column values are derived from the key (and `seed`)."""
    n = len(ids)
    mix = (pl.col("id") * 2_654_435_761 + seed) % 1_000_003
    ts = BASE_MS + pl.col("id") * 10
    return pl.DataFrame({"id": ids.cast(pl.Int64)}).with_columns(
        (mix % 1_000_000 + 1).alias("customer_id"),
        pl.lit(pl.Series(STATUSES)).get(mix % len(STATUSES)).alias("status"),
        ((mix + 100) / 100).cast(pl.Decimal(12, 2)).alias("amount"),
        ts.cast(pl.Datetime("ms")).cast(pl.Datetime("us")).alias("created_at"),
        ts.cast(pl.Datetime("ms")).cast(pl.Datetime("us")).alias("updated_at"),
        pl.lit("mysql-bin.000001").alias(SOURCE_FILE),
        (pl.int_range(n, dtype=pl.Int64) + first_pos).alias(SOURCE_POS),
        pl.lit(0, dtype=pl.Int32).alias(SOURCE_ROW),
        (pl.int_range(n, dtype=pl.Int64) + first_pos).alias(OFFSET),
        ts.alias(SOURCE_TS_MS),
        pl.lit(op).alias(OP),
        pl.lit(False).alias(DELETED),
    )


def build_table(path: Path, rows: int) -> None:
    """A silver table of `rows` keys 0..rows-1, in key order, as merges in insert order leave it."""
    chunk = ROWS_PER_FILE
    consumed = ConsumedOffsets({("binlake.shop.orders", 0): [(0, rows - 1)]}, 0)
    for start in range(0, rows, chunk):
        ids = pl.int_range(start, min(rows, start + chunk), eager=True)
        write_deltalake(
            str(path),
            orders(ids, start, seed=start).to_arrow(compat_level=pl.CompatLevel.oldest()),
            mode="append",
            target_file_size=TARGET_FILE_BYTES,
            commit_properties=CommitProperties(
                custom_metadata={COMMIT_METADATA_KEY: consumed.to_json()}
            ),
        )


def change_batch(rows: int, changes: int, *, recent: bool, seed: int = 7) -> pl.DataFrame:
    rng = random.Random(seed)
    inserts = changes // 2
    updates = changes - inserts
    window = max(updates * 2, rows // 100) if recent else rows
    touched = pl.Series(sorted(rng.sample(range(rows - window, rows), updates)))
    first_pos = 10 * rows  # later in the binlog than everything stored
    new_ids = pl.int_range(rows, rows + inserts, eager=True)
    updated = orders(touched, first_pos, op="u", seed=seed).with_columns(
        pl.when(pl.int_range(pl.len()) % 5 == 0).then(pl.lit("d")).otherwise(pl.col(OP)).alias(OP)
    )
    updated = updated.with_columns((pl.col(OP) == "d").alias(DELETED))
    inserted = orders(new_ids, first_pos + updates, seed=seed + 1)
    return pl.concat([updated, inserted])


def time_merge(template: Path, workdir: Path, batch: pl.DataFrame, repeat: int) -> float:
    best = float("inf")
    for i in range(repeat):
        copy = workdir / f"run-{i}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(template, copy)
        table = SilverDeltaTable(str(copy))
        consumed = table.consumed()
        started = time.perf_counter()
        table.merge(batch, ["id"], consumed)
        best = min(best, time.perf_counter() - started)
        shutil.rmtree(copy, ignore_errors=True)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=10_000_000)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="binlake-merge-bench-"))
    result: dict[str, object] = {"changes": args.changes}
    try:
        for label, rows in (("small", args.small), ("large", args.large)):
            template = workdir / f"{label}-template"
            started = time.perf_counter()
            build_table(template, rows)
            files = len(list(template.glob("*.parquet")))
            size_mb = sum(p.stat().st_size for p in template.glob("*.parquet")) / 1e6
            print(
                f"{label}: {rows:,} rows, {files} files, {size_mb:,.0f} MB built in "
                f"{time.perf_counter() - started:.1f}s",
                flush=True,
            )
            for kind in ("recent", "uniform"):
                batch = change_batch(rows, args.changes, recent=kind == "recent")
                seconds = time_merge(template, workdir, batch, args.repeat)
                print(f"  merge {args.changes:,} changes ({kind}): {seconds:.3f}s", flush=True)
                key = f"{label}_s" if kind == "recent" else f"{label}_{kind}_s"
                result[key] = round(seconds, 3)
                result[f"{label}_rows"] = rows
            shutil.rmtree(template, ignore_errors=True)
        result["ratio"] = round(result["large_s"] / result["small_s"], 2)  # type: ignore[operator]
        result["uniform_ratio"] = round(
            result["large_uniform_s"] / result["small_uniform_s"],  # type: ignore[operator]
            2,
        )
        print(
            f"large/small: {result['ratio']}x for recent keys (goal <= 2), "
            f"{result['uniform_ratio']}x for keys spread over the table"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

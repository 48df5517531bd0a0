#!/usr/bin/env python
"""Query latency of the lake's SQL views: count and group-by over a large silver table and over
gold, through the SQL endpoint (HTTP, a separate process) and through chDB directly.

    uv run python benchmarks/sql_queries.py --rows 10000000

One run:

1. writes a silver `shop.orders` Delta table of N rows in silver's stored shape (business
   columns, provenance, `_deleted`) with deltalake, 1M rows per commit, then one MERGE that
   deletes 1% of the rows (tombstones the views must hide) and updates another 1%;
2. writes gold `orders_by_hour_status` (a year of hours x 5 statuses) as Delta;
3. times each query `--repeats` times with the embedded engine (`LakeEngine.query`: the guard
   and chDB; the guard's own share is shown apart), then the same through
   `binlake sql-endpoint` over HTTP with a keep-alive client.

The ratio endpoint/direct is the HTTP (and process) overhead. The last line printed is one JSON
object: rows, build seconds, and p50/p95 (ms) per query and path.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx
import numpy as np
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from binlake.gold.tables import gold_table_uri
from binlake.local_stack.network import free_port, port_is_open
from binlake.settings import Settings
from binlake.silver.tables import silver_table_uri
from binlake.sql.engine import LakeEngine

STATUSES = np.array(["new", "paid", "shipped", "delivered", "cancelled"])
CHUNK = 1_000_000
BASE_MS = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
QUERIES = {
    "silver_count": "SELECT count() FROM lake.shop__orders",
    "silver_group_by": (
        "SELECT status, count(), sum(customer_id) FROM lake.shop__orders GROUP BY status"
    ),
    "gold_count": "SELECT count() FROM lake.gold__orders_by_hour_status",
    "gold_group_by": (
        "SELECT status, sum(orders), sum(revenue) FROM lake.gold__orders_by_hour_status "
        "GROUP BY status"
    ),
}


def silver_chunk(first: int, rows: int) -> pa.Table:
    ids = np.arange(first, first + rows, dtype=np.int64)
    ts = BASE_MS + ids
    micros = pa.array(ts * 1000, pa.timestamp("us"))
    return pa.table(
        {
            "id": ids,
            "customer_id": ids % 50_000,
            "status": STATUSES[ids % len(STATUSES)],
            "created_at": micros,
            "updated_at": micros,
            "_source_file": pa.array(["mariadb-bin.000001"] * rows, pa.string()),
            "_source_pos": ids * 100,
            "_source_row": np.zeros(rows, dtype=np.int32),
            "_offset": ids,
            "_source_ts_ms": ts,
            "_op": pa.array(["c"] * rows, pa.string()),
            "_deleted": np.zeros(rows, dtype=bool),
        }
    )


def build_silver(lake: str, rows: int) -> tuple[int, int]:
    """The table, then one MERGE deleting 1% and updating 1% of it; (live rows, tombstones)."""
    uri = silver_table_uri(lake, "shop.orders")
    for first in range(0, rows, CHUNK):
        write_deltalake(uri, silver_chunk(first, min(CHUNK, rows - first)), mode="append")
    changed = max(rows // 50, 2)
    source = silver_chunk(0, changed)
    deleted = np.arange(changed) % 2 == 0
    source = source.set_column(
        source.schema.get_field_index("_deleted"), "_deleted", pa.array(deleted)
    )
    source = source.set_column(
        source.schema.get_field_index("status"),
        "status",
        pa.array(np.where(deleted, "new", "refunded")),
    )
    (
        DeltaTable(uri)
        .merge(
            source,
            predicate=f"t.id = s.id AND t.id < {changed}",
            source_alias="s",
            target_alias="t",
        )
        .when_matched_update_all()
        .execute()
    )
    tombstones = int(deleted.sum())
    return rows - tombstones, tombstones


def build_gold(lake: str) -> int:
    hours = np.arange(365 * 24, dtype=np.int64)
    rows = len(hours) * len(STATUSES)
    hour = np.repeat(hours, len(STATUSES))
    micros = (BASE_MS + hour * 3_600_000) * 1000
    table = pa.table(
        {
            "hour": pa.array(micros, pa.timestamp("us", "UTC")),
            "status": np.tile(STATUSES, len(hours)),
            "orders": (hour % 17) + 1,
            "revenue": pa.array([None] * rows, pa.decimal128(18, 2)).fill_null(0),
            "items": (hour % 23) + 1,
            "_source_ts_ms": BASE_MS + hour * 3_600_000,
        }
    )
    write_deltalake(gold_table_uri(lake, "orders_by_hour_status"), table)
    return rows


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p95_ms": round(p95 * 1000, 1)}


def time_direct(settings: Settings, repeats: int) -> tuple[dict[str, dict], dict[str, bytes]]:
    engine = LakeEngine(settings)
    results: dict[str, dict] = {}
    answers: dict[str, bytes] = {}
    try:
        for name, sql in QUERIES.items():
            answers[name] = engine.query(sql).data  # warm-up, and the answer to compare
            samples, guard = [], []
            for _ in range(repeats):
                began = time.perf_counter()
                engine.query(sql)
                samples.append(time.perf_counter() - began)
                began = time.perf_counter()
                engine.guard.check(sql)  # its share: two parses by ClickHouse
                guard.append(time.perf_counter() - began)
            results[name] = {**percentiles(samples), "guard_p50_ms": percentiles(guard)["p50_ms"]}
    finally:
        engine.close()
    return results, answers


def time_endpoint(
    settings: Settings, repeats: int, log: Path
) -> tuple[dict[str, dict], dict[str, bytes]]:
    port = free_port()
    env = {
        **os.environ,
        **settings.env(),
        "BINLAKE_SQL__PORT": str(port),
        "BINLAKE_SQL__PASSWORD": "bench",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "binlake", "sql-endpoint"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    results: dict[str, dict] = {}
    answers: dict[str, bytes] = {}
    try:
        deadline = time.monotonic() + 120
        while not port_is_open("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the SQL endpoint did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", auth=(settings.sql.user, "bench"), timeout=600
        ) as client:
            for name, sql in QUERIES.items():
                first = client.post("/", content=sql)
                first.raise_for_status()
                answers[name] = first.content
                samples = []
                for _ in range(repeats):
                    began = time.perf_counter()
                    client.post("/", content=sql).raise_for_status()
                    samples.append(time.perf_counter() - began)
                results[name] = percentiles(samples)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return results, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="Silver rows written.")
    parser.add_argument("--repeats", type=int, default=20, help="Timed runs per query and path.")
    parser.add_argument("--keep", action="store_true", help="Keep the temp lake.")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="binlake-sql-bench-"))
    lake = str(work / "lake")
    settings = Settings(storage_url=lake, state_dir=work / "state", tables=["shop.orders"])
    began = time.perf_counter()
    live, tombstones = build_silver(lake, args.rows)
    gold_rows = build_gold(lake)
    build_s = time.perf_counter() - began
    print(f"built silver ({args.rows:,} rows, {tombstones:,} tombstones), gold: {build_s:.1f}s")

    direct, direct_answers = time_direct(settings, args.repeats)
    endpoint, endpoint_answers = time_endpoint(settings, args.repeats, work / "endpoint.log")
    assert direct_answers == endpoint_answers, "the endpoint answered differently"
    assert int(direct_answers["silver_count"]) == live, (direct_answers["silver_count"], live)

    print(f"{'query':<18}{'direct p50':>12}{'p95':>8}{'endpoint p50':>14}{'p95':>8}{'ratio':>7}")
    summary: dict[str, object] = {
        "rows": args.rows,
        "live_rows": live,
        "tombstones": tombstones,
        "gold_rows": gold_rows,
        "build_s": round(build_s, 1),
        "repeats": args.repeats,
    }
    for name in QUERIES:
        d, e = direct[name], endpoint[name]
        ratio = round(e["p50_ms"] / d["p50_ms"], 2) if d["p50_ms"] else None
        print(
            f"{name:<18}{d['p50_ms']:>12}{d['p95_ms']:>8}{e['p50_ms']:>14}{e['p95_ms']:>8}"
            f"{ratio!s:>7}"
        )
        summary[name] = {"direct": d, "endpoint": e, "endpoint_over_direct": ratio}
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

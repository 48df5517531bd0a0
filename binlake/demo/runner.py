"""`binlake demo`: stack up, shop schema, workload, catch-up, summary."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from binlake.demo import lake_checks
from binlake.demo.latency import (
    commit_to_bronze_delays,
    commit_to_gold_delays,
    p95,
    percentile,
)
from binlake.demo.shop_schema import SHOP_DDL
from binlake.demo.workload import ShopWorkload
from binlake.local_stack.stack import LocalStack
from binlake.settings import Settings
from binlake.source_db import connect_source, count_rows


@dataclass
class DemoSummary:
    tables: dict[str, dict[str, int | None]] = field(default_factory=dict)
    gold_matches_source: bool = False
    gold_rows: int = 0
    gold_orders: int = 0
    gold_revenue: str = "0"
    commit_to_bronze_p95_s: float | None = None
    commit_to_gold_p95_s: float | None = None
    commit_to_gold_p50_s: float | None = None
    gold_samples: int = 0
    changes_measured: int = 0
    catch_up_s: float | None = None
    warm_up_s: float | None = None
    dagster_url: str = ""

    @property
    def lake_equals_source(self) -> bool:
        return self.gold_matches_source and all(
            t["source_rows"] == t["silver_rows"] for t in self.tables.values()
        )

    def as_json(self) -> dict:
        return {
            "tables": self.tables,
            "gold_matches_source": self.gold_matches_source,
            "gold": {
                "rows": self.gold_rows,
                "orders": self.gold_orders,
                "revenue": self.gold_revenue,
            },
            "commit_to_bronze_p95_s": self.commit_to_bronze_p95_s,
            "commit_to_gold_p95_s": self.commit_to_gold_p95_s,
            "commit_to_gold_p50_s": self.commit_to_gold_p50_s,
            "gold_samples": self.gold_samples,
            "changes_measured": self.changes_measured,
            "catch_up_s": self.catch_up_s,
            "warm_up_s": self.warm_up_s,
            "dagster_url": self.dagster_url,
        }


def run_demo(
    settings: Settings,
    *,
    duration_s: float,
    rate_per_s: float,
    catch_up_timeout_s: float,
    seed: int,
    console: Console,
) -> DemoSummary:
    stack = LocalStack(settings)
    with console.status("starting the stack") as status:
        stack.up(progress=status.update)
    settings = stack.settings
    shop_tables = [t for t in settings.tables if t.startswith("shop.")]

    with connect_source(settings, admin=True, database="shop") as conn:
        with conn.cursor() as cur:
            for ddl in SHOP_DDL:
                cur.execute(ddl)
        workload = ShopWorkload(conn, seed=seed)
        # Warm-up: the first change of a table creates its topic, which the bronze worker must
        # discover and join (a consumer-group rebalance). Timing starts after.
        workload.seed_catalogue()
        warm_up_s = _wait_for_lake(settings, shop_tables, catch_up_timeout_s, console, "warm-up")
        workload.changes.clear()
        with Progress(
            TextColumn("workload"),
            BarColumn(),
            TextColumn("{task.fields[tx]} transactions"),
            TimeRemainingColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("workload", total=duration_s, tx=0)
            workload.run(
                duration_s,
                rate_per_s,
                tick=lambda elapsed: bar.update(
                    task, completed=elapsed, tx=workload.counts.transactions
                ),
            )
    console.print(
        f"workload: {workload.counts.transactions} transactions, {workload.counts.inserts} inserts,"
        f" {workload.counts.updates} updates, {workload.counts.deletes} deletes"
    )

    summary = DemoSummary(dagster_url=stack.dagster_url, warm_up_s=warm_up_s)
    summary.catch_up_s = _wait_for_lake(
        settings, shop_tables, catch_up_timeout_s, console, "catch-up"
    )

    for table in shop_tables:
        try:
            silver_rows = lake_checks.silver_without_provenance(settings, table).height
        except FileNotFoundError:
            silver_rows = None
        summary.tables[table.split(".", 1)[1]] = {
            "source_rows": count_rows(settings, table),
            "silver_rows": silver_rows,
        }
    summary.gold_matches_source = lake_checks.gold_equals_source(settings)
    try:
        gold = lake_checks.gold_from_lake(settings)
    except FileNotFoundError:
        gold = []
    summary.gold_rows = len(gold)
    summary.gold_orders = sum(row[2] for row in gold)
    summary.gold_revenue = str(sum((row[3] for row in gold), start=0))
    bronze_delays = commit_to_bronze_delays(settings, workload.changes)
    gold_delays = commit_to_gold_delays(settings, workload.changes)
    summary.changes_measured = len(bronze_delays)
    summary.commit_to_bronze_p95_s = _rounded(p95(bronze_delays))
    summary.commit_to_gold_p95_s = _rounded(p95(gold_delays))
    summary.commit_to_gold_p50_s = _rounded(percentile(gold_delays, 0.5))
    summary.gold_samples = len(gold_delays)
    _print_summary(console, summary)
    return summary


def _wait_for_lake(
    settings: Settings, tables: list[str], timeout_s: float, console: Console, phase: str
) -> float | None:
    """Seconds until silver equals the source and gold matches it, or None on timeout."""
    began = time.monotonic()
    with console.status(f"{phase}: waiting for silver and gold") as status:
        while True:
            pending = [t for t in tables if not lake_checks.silver_equals_source(settings, t)]
            if not pending and lake_checks.gold_equals_source(settings):
                return round(time.monotonic() - began, 1)
            if time.monotonic() - began > timeout_s:
                console.print(f"[red]{phase}: lake did not catch up within {timeout_s:.0f} s[/red]")
                return None
            status.update(
                f"{phase}: waiting for {', '.join(pending) or 'gold'}"
                f" ({time.monotonic() - began:.0f} s)"
            )
            time.sleep(1)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _print_summary(console: Console, summary: DemoSummary) -> None:
    grid = Table("table", "source rows", "silver rows", "equal", title="source vs silver")
    for table, counts in summary.tables.items():
        equal = counts["source_rows"] == counts["silver_rows"]
        grid.add_row(
            table,
            str(counts["source_rows"]),
            str(counts["silver_rows"]),
            "[green]yes[/green]" if equal else "[red]NO[/red]",
        )
    console.print(grid)
    console.print(
        f"gold orders_by_hour_status: {summary.gold_rows} rows, {summary.gold_orders} orders,"
        f" revenue {summary.gold_revenue}; matches source: {summary.gold_matches_source}"
    )
    console.print(
        f"commit-to-bronze p95: {summary.commit_to_bronze_p95_s} s over {summary.changes_measured}"
        f" changes; commit-to-gold p95: {summary.commit_to_gold_p95_s} s;"
        f" catch-up after workload: {summary.catch_up_s} s (warm-up before it:"
        f" {summary.warm_up_s} s)"
    )
    console.print(f"Dagster UI: {summary.dagster_url}   stop with: binlake down")

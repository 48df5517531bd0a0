"""`binlake demo`: stack up, shop schema, workload, catch-up, summary."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from binlake.bronze.manifest import Manifest
from binlake.demo import lake_checks
from binlake.demo.latency import (
    commit_to_bronze_delays,
    commit_to_gold_delays,
    p95,
    percentile,
)
from binlake.demo.queryable import QueryableWatch
from binlake.demo.shop_schema import SHOP_DDL
from binlake.demo.workload import ShopWorkload, WorkloadCounts
from binlake.local_stack.components import sql_endpoint_installed
from binlake.local_stack.stack import LocalStack
from binlake.settings import Settings
from binlake.source_db import connect_source, count_rows
from binlake.storage import LakeStorage

SUMMARY_FILE = "demo-summary.json"  # under the state directory unless --summary-json says

# What the demo prints as an example of querying the lake: gold's figures, through the endpoint.
SAMPLE_QUERY = (
    "SELECT status, sum(orders) AS orders, sum(revenue) AS revenue "
    "FROM lake.gold__orders_by_hour_status GROUP BY status ORDER BY status"
)


@dataclass
class DemoSummary:
    """What the demo found; written as JSON also when it failed or was interrupted (`error`,
    `phase`: where; the figures it had by then)."""

    phase: str = "starting the stack"
    error: str | None = None
    lake_url: str = ""
    lake_continued: bool = False  # the lake held bronze of an earlier run
    workload: WorkloadCounts = field(default_factory=WorkloadCounts)
    tables: dict[str, dict[str, int | None]] = field(default_factory=dict)
    gold_matches_source: bool = False
    gold_rows: int = 0
    gold_orders: int = 0
    gold_revenue: str = "0"
    commit_to_bronze_p95_s: float | None = None
    commit_to_gold_p95_s: float | None = None
    commit_to_gold_p50_s: float | None = None
    commit_to_queryable_p95_s: float | None = None
    commit_to_queryable_p50_s: float | None = None
    queryable_samples: int = 0
    gold_samples: int = 0
    changes_measured: int = 0
    catch_up_s: float | None = None
    warm_up_s: float | None = None
    dagster_url: str = ""
    sql_url: str = ""
    sample_query: str = ""
    sample_answer: list[list] = field(default_factory=list)

    @property
    def lake_equals_source(self) -> bool:
        return self.gold_matches_source and all(
            t["source_rows"] == t["silver_rows"] for t in self.tables.values()
        )

    def as_json(self) -> dict:
        return {
            "completed": self.error is None and self.phase == "done",
            "phase": self.phase,
            "error": self.error,
            "lake_url": self.lake_url,
            "lake_continued": self.lake_continued,
            "workload": asdict(self.workload),
            "lake_equals_source": self.lake_equals_source,
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
            "commit_to_queryable_p95_s": self.commit_to_queryable_p95_s,
            "commit_to_queryable_p50_s": self.commit_to_queryable_p50_s,
            "queryable_samples": self.queryable_samples,
            "gold_samples": self.gold_samples,
            "changes_measured": self.changes_measured,
            "catch_up_s": self.catch_up_s,
            "warm_up_s": self.warm_up_s,
            "dagster_url": self.dagster_url,
            "sql_url": self.sql_url,
            "sample_query": self.sample_query,
            "sample_answer": self.sample_answer,
        }


def run_demo(
    settings: Settings,
    *,
    duration_s: float,
    rate_per_s: float,
    catch_up_timeout_s: float,
    seed: int,
    console: Console,
    summary_path: Path,
) -> DemoSummary:
    """Run the demo; its summary is written to `summary_path` however it ends (an error or an
    interrupt is recorded in it, then raised again)."""
    summary = DemoSummary()
    try:
        _run_demo(
            settings,
            summary,
            duration_s=duration_s,
            rate_per_s=rate_per_s,
            catch_up_timeout_s=catch_up_timeout_s,
            seed=seed,
            console=console,
        )
        summary.phase = "done"
    except KeyboardInterrupt:
        summary.error = "interrupted"
        raise
    except Exception as exc:
        summary.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        write_summary(summary, summary_path)
        console.print(f"summary written to {summary_path}")
    return summary


def write_summary(summary: DemoSummary, path: Path) -> None:
    """The summary as JSON at `path`, replaced whole (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(summary.as_json(), indent=2, default=str))
    partial.replace(path)


def _run_demo(
    settings: Settings,
    summary: DemoSummary,
    *,
    duration_s: float,
    rate_per_s: float,
    catch_up_timeout_s: float,
    seed: int,
    console: Console,
) -> None:
    stack = LocalStack(settings)
    with console.status("starting the stack") as status:
        stack.up(progress=status.update)
    settings = stack.settings
    _say_which_lake(settings, summary, console)
    summary.dagster_url = stack.dagster_url
    shop_tables = [t for t in settings.tables if t.startswith("shop.")]

    watch = _queryable_watch(settings)
    with ExitStack() as watching, connect_source(settings, admin=True, database="shop") as conn:
        with conn.cursor() as cur:
            for ddl in SHOP_DDL:
                cur.execute(ddl)
        workload = ShopWorkload(conn, seed=seed)
        summary.workload = workload.counts  # counted as it goes: a partial summary has them
        # Warm-up: the first change of a table creates its topic, which the bronze worker must
        # discover and join (a consumer-group rebalance). Timing starts after.
        summary.phase = "warm-up"
        workload.seed_catalogue()
        summary.warm_up_s = _wait_for_lake(
            settings, shop_tables, catch_up_timeout_s, console, "warm-up"
        )
        workload.changes.clear()
        _reload_dagster_definitions(stack, console)
        summary.phase = "workload"
        if watch is not None:
            watching.enter_context(watch)
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
            f"workload: {workload.counts.transactions} transactions, "
            f"{workload.counts.inserts} inserts, {workload.counts.updates} updates, "
            f"{workload.counts.deletes} deletes"
        )
        # The watch goes on until the lake has caught up: the last changes become queryable
        # after the workload ends.
        summary.phase = "catch-up"
        summary.catch_up_s = _wait_for_lake(
            settings, shop_tables, catch_up_timeout_s, console, "catch-up"
        )

    summary.phase = "checks"
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
    if watch is not None:
        queryable_delays = watch.delays(workload.changes)
        summary.commit_to_queryable_p95_s = _rounded(p95(queryable_delays))
        summary.commit_to_queryable_p50_s = _rounded(percentile(queryable_delays, 0.5))
        summary.queryable_samples = len(queryable_delays)
        summary.sql_url = sql_url(settings)
        summary.sample_query = SAMPLE_QUERY
        summary.sample_answer = _sample_answer(settings, console)
    _print_summary(console, summary)


def _say_which_lake(settings: Settings, summary: DemoSummary, console: Console) -> None:
    """Whether the demo starts a new lake or continues the one an earlier run left (the local
    broker keeps its topics across `down` and `up`, so the lake goes on; nothing is archived)."""
    summary.lake_url = settings.lake_url
    held = Manifest(LakeStorage.from_settings(settings)).last_offsets()
    summary.lake_continued = bool(held)
    if held:
        console.print(
            f"continuing the lake at {settings.lake_url} (bronze of {len(held)} topic-partition(s)"
            f" from an earlier run); for a new one: `binlake down`, then remove "
            f"{settings.state_dir}"
        )
    else:
        console.print(f"new lake at {settings.lake_url}")


def sql_url(settings: Settings) -> str:
    return f"http://{settings.sql.host}:{settings.sql.port}"


def _queryable_watch(settings: Settings) -> QueryableWatch | None:
    """A watch over the stack's SQL endpoint; None when chDB (the `sql` extra) is missing and
    `binlake up` serves no endpoint."""
    if not sql_endpoint_installed():
        return None
    return QueryableWatch(
        sql_url(settings), settings.sql.user, settings.sql.password.get_secret_value()
    )


def _sample_answer(settings: Settings, console: Console) -> list[list]:
    """The sample query's rows, asked of the endpoint as a dashboard would."""
    try:
        response = httpx.post(
            sql_url(settings),
            content=f"{SAMPLE_QUERY} FORMAT JSONCompact",
            auth=(settings.sql.user, settings.sql.password.get_secret_value()),
            timeout=30,
        )
        response.raise_for_status()
        return response.json()["data"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        console.print(f"[red]sample query failed: {str(exc)[:300]}[/red]")
        return []


def _reload_dagster_definitions(stack: LocalStack, console: Console) -> None:
    """Silver has orders now: reloaded, the UI's gold partitions start at the oldest order's hour
    instead of 2024 (a lake read before it held data). Only the UI is concerned, so a failure is
    said and the demo goes on."""
    try:
        stack.reload_dagster_definitions()
    except (httpx.HTTPError, RuntimeError) as exc:
        console.print(f"[yellow]Dagster did not reload its definitions: {str(exc)[:300]}[/yellow]")


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
    if summary.queryable_samples or summary.sql_url:
        console.print(
            f"commit-to-queryable p95: {summary.commit_to_queryable_p95_s} s over "
            f"{summary.queryable_samples} order changes (seen through the SQL endpoint)"
        )
    if summary.sql_url:
        answer = Table("status", "orders", "revenue", title=f"{summary.sql_url}: {SAMPLE_QUERY}")
        for row in summary.sample_answer:
            answer.add_row(*(str(value) for value in row))
        console.print(answer)
        console.print(f'SQL endpoint: {summary.sql_url}   try: binlake sql "{SAMPLE_QUERY}"')
    console.print(f"Dagster UI: {summary.dagster_url}   stop with: binlake down")

#!/usr/bin/env python
"""Commit-to-gold delay over a sustained workload, with the Dagster daemon running.

    uv run python benchmarks/commit_to_gold.py [--duration 120] [--rate 20]

Starts a local stack of its own (MariaDB, Kafka, Kafka Connect + Debezium, the Faust bronze
worker, Dagster webserver and daemon) in a temp state directory on free ports, runs the demo's
shop workload (inserts, updates, deletes over four tables, `--rate` transactions a second for
`--duration` seconds), waits for the lake to catch up, and measures, for every change to
`shop.orders`, the time from its commit at the source to the first gold materialization that
includes it (`binlake.demo.latency`). Stops the stack by PID at the end.

The last line is one JSON object: `p50_s`, `p95_s`, `samples` (goal: p95 under 30 s), and the
commit-to-bronze p95 and whether silver and gold equalled the source afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.support import on_a_stack_of_its_own
from binlake.demo.runner import DemoSummary, run_demo
from binlake.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="workload seconds")
    parser.add_argument("--rate", type=float, default=20.0, help="transactions per second")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the state directory")
    args = parser.parse_args(argv)
    console = Console(stderr=True)

    def demo(settings: Settings) -> DemoSummary:
        return run_demo(
            settings,
            duration_s=args.duration,
            rate_per_s=args.rate,
            catch_up_timeout_s=600,
            seed=args.seed,
            console=console,
        )

    summary = on_a_stack_of_its_own("binlake-commit-to-gold-", args.keep, console.print, demo)
    result = {
        "p50_s": summary.commit_to_gold_p50_s,
        "p95_s": summary.commit_to_gold_p95_s,
        "samples": summary.gold_samples,
        "commit_to_bronze_p95_s": summary.commit_to_bronze_p95_s,
        "lake_equals_source": summary.lake_equals_source,
        "duration_s": args.duration,
        "rate_per_s": args.rate,
    }
    print(
        f"commit-to-gold: p50 {result['p50_s']} s, p95 {result['p95_s']} s over "
        f"{result['samples']} changes to shop.orders (goal: p95 < 30 s); commit-to-bronze p95 "
        f"{result['commit_to_bronze_p95_s']} s; lake equals source: {result['lake_equals_source']}"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""One tick of the bronze manifest sensor on a long manifest, on local disk and on S3.

    uv run python benchmarks/sensor_tick.py                  # N = 100 000, local and S3
    uv run python benchmarks/sensor_tick.py --files 20000 --repeat 9 --no-s3

For N (``--files``, default 100 000) and for a small manifest (``--small``, default 1 000), in
a temporary lake on local disk and in a prefix of a real S3 server (SeaweedFS `weed mini`,
started by this script in a temp dir on free ports and stopped by its PID; ``--no-s3`` skips it):

1. builds a manifest of that many entries (`benchmarks/manifest_lakes.py`): commits of
   ``--per-commit`` (1 000) entries, a checkpoint after them and 50 one-entry commits after the
   checkpoint, as workers leave it. The entries are spread over the captured tables
   (``settings.tables``, round robin) and over hourly partitions ending at 2026-11-21-09:00,
   1 000 files an hour, with plausible offsets, paths, sizes, source timestamps and schema
   fields; every file is live (no compaction: the largest checkpoint). The files themselves are
   not written: the sensor reads only the manifest;
2. (a) **idle tick**: one tick from the manifest's end, nothing new (what the daemon does every
   ``dagster.sensor_interval_seconds`` while bronze is quiet);
3. commits ``--new`` (default 100) entries with `Manifest.append`, one commit each, the bronze
   worker's own path (timed: the writer's cost, one of them writes a checkpoint);
4. (b) **tick with new entries**: one tick from the cursor of (a), which reads and reports the
   ``--new`` entries.
(a) and (b) are measured ``--repeat`` times (default 5; ticks have no side effect) and the
median kept. Their cost must not grow with N: the ratio to the small manifest's should be ~1.
``--catch-up`` also times the cold catch-up from an empty cursor (ticks capped at
``dagster.sensor_max_files_per_tick`` files until the end).

A tick is the sensor function called as Dagster calls it,
``sensor(build_sensor_context(cursor=..., resources={"bronze_lake": ..., "consumer_lag": ...},
instance=DagsterInstance.ephemeral()))``, built by `build_manifest_sensor`; `bronze_lake` is the
code location's resource for the lake (`build_resources`), `consumer_lag` the unit tests' fake
(`tests.support.resources.consumer_lag`: no broker; every table reads "no topic"). The time
covers the sensor's evaluation and its `SensorResult`, not the daemon's storing of the events.

The last line printed is one JSON object: ``{"files": N, "small_files": n, "new_entries": k,
"repeat": r, "runs": [{"storage": "local" | "s3", "files": ..., "idle_tick_s": ..., "new_tick_s":
..., "append_s": ..., "max_append_s": ..., "checkpoint_bytes": ..., "catch_up_s": ...}, ...],
"ratios": {"local": {"idle": ..., "new": ...}, "s3": {...}}}`` (ratio = tick with N / tick with
n, same storage, same run). Goal: ticks under 1 s, ratios about 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import dagster as dg

from benchmarks.manifest_lakes import build_manifest, lake_settings, maybe_s3
from binlake.bronze.layout import HourBucket, bronze_file_path
from binlake.bronze.manifest import Manifest, ManifestEntry
from binlake.local_stack.s3_server import S3Server
from binlake.settings import Settings
from binlake.storage import LakeStorage
from dagster_defs.bronze.sensors import build_manifest_sensor
from dagster_defs.keys import hourly_partitions
from dagster_defs.resources import BRONZE_LAKE, CONSUMER_LAG, build_resources
from tests.support.manifest import manifest_entry
from tests.support.resources import consumer_lag

LAST_HOUR_MS = 1_795_251_600_000  # 2026-11-21 09:00:00 UTC, the newest hour of the manifest
HOUR_MS = 3_600_000
FILES_PER_HOUR = 1_000
ROWS_PER_FILE = 500
TAIL = 50  # one-entry commits after the checkpoint


def make_entry(settings: Settings, index: int, total: int) -> ManifestEntry:
    """The `index`-th of `total` bronze files: tables round robin, 1 000 files an hour."""
    table = settings.tables[index % len(settings.tables)]
    topic = settings.topic_for(table)
    per_table = index // len(settings.tables)  # files of this table before this one
    first_offset = per_table * ROWS_PER_FILE
    hours_back = (total - 1 - index) // FILES_PER_HOUR
    hour_ms = LAST_HOUR_MS - hours_back * HOUR_MS
    min_ts = hour_ms + (index % FILES_PER_HOUR) * 3_000
    bucket = HourBucket.of_millis(min_ts)
    return manifest_entry(
        first_offset,
        first_offset + ROWS_PER_FILE - 1,
        table=table,
        topic=topic,
        path=bronze_file_path(table, bucket, topic, 0, first_offset),
        partition_key=bucket.partition_key,
        bytes=48_000 + (index * 7919) % 16_000,
        written_at=time.time(),
        rotation_reason="rows",
        primary_key=["id"],
        min_source_ts_ms=min_ts,
        max_source_ts_ms=min_ts + 2_500,
        schema_fingerprint=f"{index % 3:064x}",
        schema_version=1 + index % 3,
    )


@dataclass
class Lake:
    settings: Settings
    storage: LakeStorage
    sensor: dg.SensorDefinition
    resources: dict

    @classmethod
    def create(cls, root: Path, server: S3Server | None) -> Lake:
        settings = lake_settings(root, f"sensor-{uuid.uuid4().hex[:12]}", server)
        resources = build_resources(settings)
        return cls(
            settings=settings,
            storage=LakeStorage.from_settings(settings),
            sensor=build_manifest_sensor(settings, hourly_partitions(settings)),
            resources={
                BRONZE_LAKE: resources[BRONZE_LAKE],
                CONSUMER_LAG: consumer_lag(),  # no broker: every table reads "no topic"
            },
        )

    def tick(
        self, cursor: str | None, instance: dg.DagsterInstance
    ) -> tuple[float, dg.SensorResult]:
        context = dg.build_sensor_context(
            cursor=cursor, resources=self.resources, instance=instance
        )
        start = time.perf_counter()
        result = self.sensor(context)
        elapsed = time.perf_counter() - start
        assert isinstance(result, dg.SensorResult)
        return elapsed, result


@dataclass
class Measure:
    storage: str
    files: int
    commits: int
    checkpoint_bytes: int
    build_s: float
    idle_tick_s: float
    new_tick_s: float
    append_s: float
    max_append_s: float
    catch_up_s: float | None
    idle_ticks_s: list[float]
    new_ticks_s: list[float]

    def row(self) -> dict:
        keys = ("storage", "files", "commits", "checkpoint_bytes", "build_s", "idle_tick_s")
        row = {key: getattr(self, key) for key in keys}
        row |= {
            "new_tick_s": self.new_tick_s,
            "append_s": self.append_s,
            "max_append_s": self.max_append_s,
            "catch_up_s": self.catch_up_s,
        }
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}


def catch_up(lake: Lake, instance: dg.DagsterInstance, files: int, end: int) -> float:
    """Ticks from an empty cursor until the end; their summed time."""
    seconds, reported, cursor = 0.0, 0, None
    while cursor != str(end):
        elapsed, result = lake.tick(cursor, instance)
        seconds += elapsed
        reported += len(result.asset_events or [])
        if result.cursor == cursor:
            raise SystemExit(f"catch-up stalled at cursor {cursor}")
        cursor = result.cursor
    if reported != files:
        raise SystemExit(f"catch-up reported {reported} of {files} files")
    return seconds


def measure(
    root: Path,
    server: S3Server | None,
    files: int,
    args: argparse.Namespace,
    instance: dg.DagsterInstance,
) -> Measure:
    lake = Lake.create(root, server)
    total = files + args.new
    entries = [make_entry(lake.settings, i, total) for i in range(total)]
    start = time.perf_counter()
    built = build_manifest(lake.storage, entries[:files], per_commit=args.per_commit, tail=TAIL)
    build_s = time.perf_counter() - start
    end = Manifest(lake.storage).end()
    assert end == built.commits, (end, built.commits)
    caught_up = catch_up(lake, instance, files, end) if args.catch_up else None

    idle: list[float] = []
    for _ in range(args.repeat):
        elapsed, result = lake.tick(str(end), instance)
        if result.asset_events or result.cursor != str(end):
            raise SystemExit(f"idle tick reported {len(result.asset_events or [])} files")
        idle.append(elapsed)

    manifest = Manifest(lake.storage)  # a worker's: it reads the checkpoint once, then commits
    manifest.last_offsets()
    appends: list[float] = []
    for entry in entries[files:]:
        start = time.perf_counter()
        manifest.append(entry)
        appends.append(time.perf_counter() - start)

    new: list[float] = []
    for _ in range(args.repeat):
        elapsed, result = lake.tick(str(end), instance)
        if len(result.asset_events or []) != args.new:
            raise SystemExit(f"tick reported {len(result.asset_events or [])} of {args.new} files")
        new.append(elapsed)
    assert result.cursor == str(end + args.new)
    return Measure(
        storage="local" if server is None else "s3",
        files=files,
        commits=built.commits,
        checkpoint_bytes=built.checkpoint_bytes,
        build_s=build_s,
        idle_tick_s=statistics.median(idle),
        new_tick_s=statistics.median(new),
        append_s=sum(appends),
        max_append_s=max(appends),
        catch_up_s=caught_up,
        idle_ticks_s=idle,
        new_ticks_s=new,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000, help="entries in the manifest (N)")
    parser.add_argument("--small", type=int, default=1_000, help="entries in the small manifest")
    parser.add_argument("--new", type=int, default=100, help="entries committed before (b)")
    parser.add_argument("--repeat", type=int, default=5, help="ticks measured for (a) and (b)")
    parser.add_argument("--per-commit", type=int, default=1_000, help="entries a history commit")
    parser.add_argument("--catch-up", action="store_true", help="also time the cold catch-up")
    parser.add_argument("--no-s3", action="store_true", help="local disk only")
    args = parser.parse_args()
    if min(args.new, args.repeat, args.per_commit) < 1 or min(args.files, args.small) <= TAIL:
        parser.error(f"--new, --repeat, --per-commit >= 1; --files, --small > {TAIL}")

    logging.disable(logging.INFO)  # the sensor logs a line per tick to stderr
    results: list[Measure] = []
    with (
        dg.DagsterInstance.ephemeral() as instance,
        tempfile.TemporaryDirectory(prefix="binlake-sensor-tick-") as tmp,
        maybe_s3(not args.no_s3) as server,
    ):
        measure(Path(tmp), None, TAIL + 10, argparse.Namespace(**{**vars(args), "new": 1,
                "repeat": 1, "catch_up": False}), instance)  # fmt: skip  # warm-up: imports
        for where in (None, server) if server else (None,):
            for files in (args.small, args.files):
                m = measure(Path(tmp), where, files, args, instance)
                results.append(m)
                print(
                    f"{m.storage:>5} {m.files:>9,} entries ({m.commits} commits, checkpoint "
                    f"{m.checkpoint_bytes / 1e6:.1f} MB, built in {m.build_s:.1f} s): "
                    f"idle tick {m.idle_tick_s * 1000:.1f} ms, tick with {args.new} new "
                    f"{m.new_tick_s * 1000:.1f} ms; {args.new} appends {m.append_s:.2f} s "
                    f"(slowest {m.max_append_s * 1000:.0f} ms)"
                    + ("" if m.catch_up_s is None else f"; catch-up {m.catch_up_s:.2f} s"),
                    flush=True,
                )
    ratios: dict[str, dict[str, float]] = {}
    for storage in dict.fromkeys(m.storage for m in results):
        small, big = (m for m in results if m.storage == storage)
        ratios[storage] = {
            "idle": round(big.idle_tick_s / small.idle_tick_s, 3),
            "new": round(big.new_tick_s / small.new_tick_s, 3),
        }
        print(
            f"{storage}: tick with {args.files:,} / with {args.small:,} entries: idle "
            f"{ratios[storage]['idle']:.2f}x, with {args.new} new {ratios[storage]['new']:.2f}x"
        )
    print(
        json.dumps(
            {
                "files": args.files,
                "small_files": args.small,
                "new_entries": args.new,
                "repeat": args.repeat,
                "runs": [m.row() for m in results],
                "ratios": ratios,
            }
        )
    )


if __name__ == "__main__":
    main()

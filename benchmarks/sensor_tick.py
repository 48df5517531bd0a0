#!/usr/bin/env python
"""One tick of the bronze manifest sensor, with N files already in the manifest.

    uv run python benchmarks/sensor_tick.py                  # N = 100 000
    uv run python benchmarks/sensor_tick.py --files 20000 --repeat 9

For N (``--files``, default 100 000) and for a small manifest (``--small``, default 1 000), in a
temporary lake:

1. writes a manifest of that many entries: `ManifestEntry` lines as `Manifest.append` writes them
   (`ManifestEntry.to_json`), spread over the captured tables (``settings.tables``, round robin)
   and over hourly partitions ending at 2026-11-21-09:00, 1 000 files an hour, with plausible
   offsets, paths, sizes, source timestamps and schema fields. The lines are written in one go
   rather than by N `Manifest.append` calls (an fsync each); the bytes are the same. The files
   themselves are not written: the sensor reads only the manifest;
2. (a) **catch-up**: ticks from an empty cursor until all N entries are reported, each capped at
   ``dagster.sensor_max_files_per_tick`` (10k) files (what the sensor does once, on a new Dagster
   instance over an existing lake); the time is their sum;
3. appends ``--new`` (default 10) entries with `Manifest.append`, the bronze worker's own path;
4. (b) **steady state**: one tick from the cursor (a) ended at, which reads and reports only the
   new entries. Its cost must not grow with N. (b) is measured ``--repeat`` times (default 5;
   ticks have no side effect) and the median kept.

A tick is the sensor function called as Dagster calls it,
``sensor(build_sensor_context(cursor=..., resources={"bronze_lake": BronzeLake(...)},
instance=DagsterInstance.ephemeral()))``, built by `build_manifest_sensor(settings,
hourly_partitions(settings))`; the time covers the sensor's evaluation and its `SensorResult`,
not the daemon's storing of the reported events.

The last line printed is one JSON object: `files` (N), `tick_s` (the steady-state tick with N
files), `tick_small_s` (the same with the small manifest), `ratio` (tick_s / tick_small_s),
`catch_up_s`, `catch_up_small_s`, `new_entries`, `manifest_bytes`, `repeat`. Goal: `tick_s` under
1 s, and `ratio` about 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import dagster as dg

from binlake.bronze.layout import MANIFEST_PATH, HourBucket, bronze_file_path
from binlake.bronze.manifest import Manifest, ManifestEntry
from binlake.settings import Settings
from binlake.storage import LakeStorage
from dagster_defs.bronze.sensors import build_manifest_sensor
from dagster_defs.keys import hourly_partitions
from dagster_defs.resources import BRONZE_LAKE, BronzeLake
from tests.support.manifest import manifest_entry

LAST_HOUR_MS = 1_795_251_600_000  # 2026-11-21 09:00:00 UTC, the newest hour of the manifest
HOUR_MS = 3_600_000
FILES_PER_HOUR = 1_000
ROWS_PER_FILE = 500


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
        written_at=min_ts / 1000 + 4.5,
        rotation_reason="rows",
        primary_key=["id"],
        min_source_ts_ms=min_ts,
        max_source_ts_ms=min_ts + 2_500,
        schema_fingerprint=f"{index % 3:064x}",
        schema_version=1 + index % 3,
    )


@dataclass
class Lake:
    root: Path
    settings: Settings
    storage: LakeStorage
    sensor: dg.SensorDefinition

    @classmethod
    def create(cls, root: Path) -> Lake:
        settings = Settings(state_dir=root / "state", storage_url=str(root / "lake"))
        return cls(
            root=root,
            settings=settings,
            storage=LakeStorage.from_settings(settings),
            sensor=build_manifest_sensor(settings, hourly_partitions(settings)),
        )

    def prefill(self, count: int) -> int:
        """Write `count` entries at once; returns the manifest's size in bytes."""
        path = Path(self.storage.full_path(MANIFEST_PATH))
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [make_entry(self.settings, i, count).to_json() + "\n" for i in range(count)]
        path.write_text("".join(lines))
        return path.stat().st_size

    def append(self, start: int, count: int, total: int) -> None:
        manifest = Manifest(self.storage)
        for index in range(start, start + count):
            manifest.append(make_entry(self.settings, index, total))

    def tick(
        self, cursor: str | None, instance: dg.DagsterInstance
    ) -> tuple[float, dg.SensorResult]:
        context = dg.build_sensor_context(
            cursor=cursor,
            resources={BRONZE_LAKE: BronzeLake(storage_url=self.settings.lake_url)},
            instance=instance,
        )
        start = time.perf_counter()
        result = self.sensor(context)
        elapsed = time.perf_counter() - start
        assert isinstance(result, dg.SensorResult)
        return elapsed, result


@dataclass
class Measure:
    files: int
    manifest_bytes: int
    catch_up_s: float
    tick_s: float
    ticks_s: list[float]


def measure(files: int, new: int, repeat: int, instance: dg.DagsterInstance) -> Measure:
    with tempfile.TemporaryDirectory(prefix="binlake-sensor-tick-") as tmp:
        lake = Lake.create(Path(tmp))
        manifest_bytes = lake.prefill(files)
        # The cold catch-up: ticks (each capped at dagster.sensor_max_files_per_tick) until the
        # cursor reaches the end of the manifest.
        catch_up_s, reported, cursor = 0.0, 0, None
        while cursor != str(manifest_bytes):
            elapsed, first = lake.tick(cursor, instance)
            catch_up_s += elapsed
            reported += len(first.asset_events or [])
            if first.cursor == cursor:
                raise SystemExit(f"catch-up stalled at cursor {cursor}")
            cursor = first.cursor
        if reported != files:
            raise SystemExit(f"catch-up reported {reported} of {files} files")
        lake.append(files, new, files + new)  # the same hours: the newest partition
        ticks_s: list[float] = []
        for _ in range(repeat):
            elapsed, result = lake.tick(first.cursor, instance)
            if len(result.asset_events or []) != new:
                raise SystemExit(f"steady tick reported {len(result.asset_events)} of {new} files")
            ticks_s.append(elapsed)
        size = os.path.getsize(lake.storage.full_path(MANIFEST_PATH))
        assert result.cursor == str(size)
    return Measure(files, manifest_bytes, catch_up_s, statistics.median(ticks_s), ticks_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000, help="files in the manifest (N)")
    parser.add_argument("--small", type=int, default=1_000, help="files in the small manifest")
    parser.add_argument("--new", type=int, default=10, help="entries appended before (b)")
    parser.add_argument("--repeat", type=int, default=5, help="steady-state ticks measured")
    args = parser.parse_args()
    if min(args.files, args.small, args.new, args.repeat) < 1:
        parser.error("--files, --small, --new and --repeat must be at least 1")

    logging.disable(logging.INFO)  # the sensor logs a line per tick to stderr
    with dg.DagsterInstance.ephemeral() as instance:
        measure(10, 1, 1, instance)  # warm-up: first-call imports and caches
        results = {n: measure(n, args.new, args.repeat, instance) for n in (args.small, args.files)}

    for m in results.values():
        print(
            f"{m.files:>9,} files ({m.manifest_bytes / 1e6:.1f} MB manifest): "
            f"catch-up tick {m.catch_up_s:.3f} s ({m.catch_up_s / m.files * 1e6:.0f} µs/file); "
            f"steady tick with {args.new} new files {m.tick_s * 1000:.2f} ms "
            f"(median of {len(m.ticks_s)}: {', '.join(f'{t * 1000:.2f}' for t in m.ticks_s)} ms)"
        )
    big, small = results[args.files], results[args.small]
    ratio = big.tick_s / small.tick_s
    print(
        f"steady tick with {args.files:,} files / with {args.small:,} files: {ratio:.2f}x "
        f"(goal: under 1 s: {'met' if big.tick_s < 1 else 'NOT met'})"
    )
    print(
        json.dumps(
            {
                "files": args.files,
                "tick_s": round(big.tick_s, 6),
                "catch_up_s": round(big.catch_up_s, 4),
                "small_files": args.small,
                "tick_small_s": round(small.tick_s, 6),
                "catch_up_small_s": round(small.catch_up_s, 4),
                "ratio": round(ratio, 3),
                "new_entries": args.new,
                "manifest_bytes": big.manifest_bytes,
                "repeat": args.repeat,
            }
        )
    )


if __name__ == "__main__":
    main()

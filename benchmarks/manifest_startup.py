#!/usr/bin/env python
"""What a bronze worker reads from the manifest when it starts, on 1k and 100k entries, local
and S3.

    uv run python benchmarks/manifest_startup.py
    uv run python benchmarks/manifest_startup.py --entries 1000 20000 --no-s3 --repeat 5

For each size (``--entries``, default 1 000 and 100 000) a manifest is built in a fresh lake on
local disk and in a prefix of a real S3 server (SeaweedFS `weed mini`, started here in a temp
dir on free ports, stopped by its PID; ``--no-s3`` skips it), the way ``sensor_tick.py`` builds
it (`benchmarks/manifest_lakes.py`: history commits of ``--per-commit`` entries, a checkpoint,
50 one-entry commits after it; 4 tables; ``--shape live``, the default: every file live, the
largest checkpoint; ``--shape compacted``: each hour's files superseded by the compactor's entries
after it, `benchmarks.manifest_lakes.with_compactions`). Then, each
with a new `Manifest` (nothing cached), the reads a starting worker makes:

- ``last_offsets``: `Manifest.last_offsets()`, where a writer resumes (the replay's and the
  lake/broker check's call);
- ``read_since_0``: `Manifest.read_since(0)`, what `BronzeWorker._read_manifest` calls before
  its first partition writer is created (the checkpoint's live files, then the commits after);
- ``entries_for``: `Manifest.entries_for(table)`, what each partition writer's
  `SchemaVersionTracker` calls on its first record of a table (once per table);
- ``first_commit``: the first `Manifest.commit` of a worker's `Manifest` (it reads the
  checkpoint and the commits after it before creating its commit), and ``next_commit``, one
  after it (the state is kept: one create);
- ``checkpoint_get``: the GET (or read) of the checkpoint object alone, no parsing;
- ``worker_start``: what a worker of one partition of each of the 4 tables reads before its
  first file is listed, on the one `Manifest` a worker keeps: ``read_since(0)``, 4 x
  ``entries_for``, the first ``commit``.
Each figure is the median of ``--repeat`` (default 3). The last line printed is one JSON object:
``{"runs": [{"storage", "shape", "entries", "files_written", "listed", "commits",
"checkpoint_bytes", <figure>_s...}, ...], "ratios": {"<storage> <shape>": {<figure>: big /
small}, ...}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.manifest_lakes import build_manifest, lake_settings, maybe_s3, with_compactions
from benchmarks.sensor_tick import TAIL, make_entry
from binlake.bronze.manifest import Manifest, ManifestEntry, ManifestState
from binlake.local_stack.s3_server import S3Server
from binlake.storage import LakeStorage

FIGURES = ("checkpoint_get", "last_offsets", "read_since_0", "entries_for", "first_commit")


def median_time(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(
    root: Path, server: S3Server | None, count: int, shape: str, args: argparse.Namespace
) -> dict[str, float | int | str]:
    settings = lake_settings(root, f"startup-{uuid.uuid4().hex[:12]}", server)
    storage = LakeStorage.from_settings(settings)
    entries = [make_entry(settings, i, count + 3 * args.repeat) for i in range(count)]
    if shape == "compacted":
        entries = with_compactions(entries)
    built = build_manifest(storage, entries, per_commit=args.per_commit, tail=TAIL)
    table = settings.tables[0]
    later = iter(make_entry(settings, i, count + 3 * args.repeat) for i in range(count, 10**9))

    def checkpoint_get() -> bytes | None:
        manifest = Manifest(storage)
        name = manifest.objects.names_after(manifest.checkpoint_dir)[-1]
        return manifest.objects.read(os.path.join(manifest.checkpoint_dir, name))

    def one_more(_state: ManifestState) -> list[ManifestEntry]:
        return [next(later)]

    first_commits, next_commits = [], []
    for _ in range(args.repeat):
        manifest = Manifest(storage)
        start = time.perf_counter()
        manifest.commit(one_more)
        first_commits.append(time.perf_counter() - start)
        start = time.perf_counter()
        manifest.commit(one_more)
        next_commits.append(time.perf_counter() - start)

    def worker_start() -> None:
        # One Manifest, as a worker keeps one (streams/bronze_worker.py): its checkpoint is
        # parsed once and reused.
        manifest = Manifest(storage)
        manifest.read_since(0)
        for each in settings.tables:
            manifest.entries_for(each)
        manifest.commit(one_more)

    # (the 3 x repeat commits here stay below the next checkpoint: they are plain creates)
    assert built.checkpoint_seq + TAIL + 3 * args.repeat < built.checkpoint_seq + 100

    figures = {
        "checkpoint_get": median_time(args.repeat, checkpoint_get),
        "last_offsets": median_time(args.repeat, lambda: Manifest(storage).last_offsets()),
        "read_since_0": median_time(args.repeat, lambda: Manifest(storage).read_since(0)),
        "entries_for": median_time(args.repeat, lambda: Manifest(storage).entries_for(table)),
        "first_commit": statistics.median(first_commits),
        "next_commit": statistics.median(next_commits),
    }
    figures["worker_start"] = median_time(args.repeat, worker_start)
    return {
        "storage": "local" if server is None else "s3",
        "shape": shape,
        "entries": len(entries),
        "files_written": count,
        "listed": len(Manifest(storage).entries()),
        "commits": built.commits,
        "checkpoint_bytes": built.checkpoint_bytes,
        **{f"{name}_s": round(value, 6) for name, value in figures.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, nargs=2, default=[1_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--per-commit", type=int, default=1_000, help="entries a history commit")
    parser.add_argument("--no-s3", action="store_true", help="local disk only")
    parser.add_argument(
        "--shape", nargs="+", choices=("live", "compacted"), default=["live"],
        help="live: every file live; compacted: each hour's files compacted after it",
    )  # fmt: skip
    args = parser.parse_args()
    if min(args.entries) <= TAIL or args.repeat < 1 or args.repeat > 20:
        parser.error(f"--entries > {TAIL}, 1 <= --repeat <= 20")

    runs: list[dict] = []
    with (
        tempfile.TemporaryDirectory(prefix="binlake-manifest-startup-") as tmp,
        maybe_s3(not args.no_s3) as server,
    ):
        for where in (None, server) if server else (None,):
            for shape, count in ((shape, count) for shape in args.shape for count in args.entries):
                run = measure(Path(tmp), where, count, shape, args)
                runs.append(run)
                print(
                    f"{run['storage']:>5} {shape:>9} {run['entries']:>9,} entries, "
                    f"{run['listed']:,} listed (checkpoint "
                    f"{run['checkpoint_bytes'] / 1e6:.1f} MB): "
                    + ", ".join(
                        f"{name} {run[f'{name}_s'] * 1000:.1f} ms"
                        for name in (*FIGURES, "next_commit", "worker_start")
                    ),
                    flush=True,
                )
    ratios: dict[str, dict[str, float]] = {}
    for key in dict.fromkeys(f"{run['storage']} {run['shape']}" for run in runs):
        small, big = (run for run in runs if f"{run['storage']} {run['shape']}" == key)
        ratios[key] = {
            name: round(big[f"{name}_s"] / small[f"{name}_s"], 1)
            for name in (*FIGURES, "next_commit", "worker_start")
        }
        print(f"{key}: {args.entries[1]:,} / {args.entries[0]:,} files written: {ratios[key]}")
    print(json.dumps({"repeat": args.repeat, "runs": runs, "ratios": ratios}))


if __name__ == "__main__":
    main()

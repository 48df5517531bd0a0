#!/usr/bin/env python
"""Bronze manifest commits per second, for 1 and for 4 writers racing for the next number.

    uv run python benchmarks/manifest_commits.py
    uv run python benchmarks/manifest_commits.py --commits 500 --writers 1 4 8

In a temporary lake on local disk, each writer is a process of its own (as bronze workers are)
with its own `Manifest`, and commits ``--commits`` entries (default 300) of its own
topic-partition, one entry a commit, with `Manifest.commit` (the plan reads the high-water mark
and lists the next ten offsets, as a partition writer does). All writers start together; the
time is from the start to the last commit of the slowest writer. Every commit is a
create-if-absent of the next sequence number (fsync of the object, hard link, fsync of the
directory); a writer that loses a number reads the winner's commit and tries the next one, so
`lost_races` counts the creates that found their number taken. A checkpoint is written every
100 commits, inside the timed commits.

After each run the log is checked: one commit per entry, numbers 0..N-1 without gaps, each
writer's offsets listed once and in order.

The last line printed is one JSON object: ``{"storage": "local", "commits_per_writer": ...,
"runs": [{"writers": W, "commits": N, "seconds": s, "commits_per_s": r, "lost_races": l}, ...]}``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

from binlake.bronze.manifest import Manifest, ManifestEntry, ManifestState
from binlake.storage import LakeStorage

TOPIC = "binlake.shop.orders"
BATCH = 10


def _entry(partition: int, first: int) -> ManifestEntry:
    return ManifestEntry(
        table="shop.orders",
        topic=TOPIC,
        partition=partition,
        first_offset=first,
        last_offset=first + BATCH - 1,
        rows=BATCH,
        path=f"bronze/shop.orders/date=2026-11-21/hour=10/{TOPIC}+{partition}+{first:020d}.parquet",
        partition_key="2026-11-21-10:00",
        bytes=4096,
        written_at=time.time(),
        rotation_reason="rows",
        primary_key=["id"],
    )


class CountingManifest(Manifest):
    """A manifest that counts the creates that found their sequence number taken."""

    lost = 0

    def _publish(self, seq: int, data: bytes) -> bool:
        created = super()._publish(seq, data)
        self.lost += not created
        return created


def writer(lake: str, partition: int, commits: int, start_at: float) -> tuple[float, int]:
    """Commit `commits` entries of `partition`; returns (finished at, lost races)."""
    manifest = CountingManifest(LakeStorage.from_url(lake))
    manifest.last_offsets()  # start-up read, outside the timed part
    while time.time() < start_at:
        time.sleep(0.0005)

    def plan(state: ManifestState) -> list[ManifestEntry]:
        return [_entry(partition, state.high_water.get((TOPIC, partition), -1) + 1)]

    for _ in range(commits):
        manifest.commit(plan)
    return time.time(), manifest.lost


def run(writers: int, commits: int) -> dict[str, float | int]:
    with tempfile.TemporaryDirectory(prefix="binlake-manifest-bench-") as lake:
        context = multiprocessing.get_context("spawn")
        start_at = time.time() + 2.0 + 0.5 * writers  # every process imported and ready
        with context.Pool(writers) as pool:
            results = [
                pool.apply_async(writer, (lake, partition, commits, start_at))
                for partition in range(writers)
            ]
            finished = [result.get(timeout=600) for result in results]
        seconds = max(end for end, _ in finished) - start_at
        _check(lake, writers, commits)
    total = writers * commits
    return {
        "writers": writers,
        "commits": total,
        "seconds": round(seconds, 3),
        "commits_per_s": round(total / seconds, 1),
        "lost_races": sum(lost for _, lost in finished),
    }


def _check(lake: str, writers: int, commits: int) -> None:
    log_dir = Path(lake) / "bronze/_manifest/log"
    names = sorted(p.name for p in log_dir.iterdir() if not p.name.startswith("."))
    expected = [f"{seq:020d}.json" for seq in range(writers * commits)]
    assert names == expected, "commit numbers are not 0..N-1 without gaps"
    entries = Manifest(LakeStorage.from_url(lake)).entries()  # every file is live
    for partition in range(writers):
        offsets = [e.first_offset for e in entries if e.partition == partition]
        assert offsets == list(range(0, commits * BATCH, BATCH)), f"partition {partition}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=300, help="commits per writer")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    runs = []
    for count in args.writers:
        result = run(count, args.commits)
        print(
            f"{count} writer(s): {result['commits']} commits in {result['seconds']} s = "
            f"{result['commits_per_s']} commits/s ({result['lost_races']} lost races)"
        )
        runs.append(result)
    print(json.dumps({"storage": "local", "commits_per_writer": args.commits, "runs": runs}))


if __name__ == "__main__":
    main()

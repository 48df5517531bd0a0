"""Several writers (threads, then processes) claiming the same offsets: one wins each batch."""

import json
import multiprocessing
import threading
import time
from pathlib import Path

from binlake.bronze.manifest import Manifest
from binlake.storage import LakeStorage
from tests.support.manifest_race import BATCH, claim_batches

BATCHES = 40
WRITERS = 4


def _assert_each_batch_listed_once(lake: Path, won: list[int]) -> None:
    log_dir = lake / "bronze/_manifest/log"
    names = sorted(p.name for p in log_dir.iterdir() if not p.name.startswith("."))
    # one commit per batch, numbered 0..BATCHES-1 without a gap: no number claimed twice
    assert names == [f"{seq:020d}.json" for seq in range(BATCHES)]
    firsts = [
        entry["first_offset"]
        for name in names
        for entry in json.loads((log_dir / name).read_bytes())["entries"]
    ]
    assert firsts == [batch * BATCH for batch in range(BATCHES)]
    assert sum(won) == BATCHES
    entries = Manifest(LakeStorage.from_url(str(lake))).entries()
    assert [e.first_offset for e in entries] == firsts
    assert not list(log_dir.glob(".*")), "temporary files left behind"


def test_threads_racing_for_the_same_offsets_list_each_batch_once(tmp_path: Path) -> None:
    won = [0] * WRITERS
    start_at = time.time() + 0.2

    def run(index: int) -> None:
        won[index] = claim_batches(str(tmp_path), f"t{index}", BATCHES, start_at)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    _assert_each_batch_listed_once(tmp_path, won)


def test_processes_racing_for_the_same_offsets_list_each_batch_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0  # after every process has imported binlake
    with context.Pool(WRITERS) as pool:
        results = [
            pool.apply_async(claim_batches, (str(tmp_path), f"p{i}", BATCHES, start_at))
            for i in range(WRITERS)
        ]
        won = [result.get(timeout=120) for result in results]
    _assert_each_batch_listed_once(tmp_path, won)
    assert sum(1 for count in won if count) >= 1

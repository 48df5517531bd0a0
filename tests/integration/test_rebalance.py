"""Two bronze workers in one consumer group; one of them stops mid-stream.

A real Kafka broker (the test session's), a 4-partition CDC topic, a producer thread writing
Debezium changes for the whole test, and two real `python -m binlake worker` processes, a and b,
in the default (dynamic) group membership. Once each owns two partitions and b has written some
of its own, b is stopped:

* `sigterm`: b flushes what it buffered, commits, leaves the group; a takes over at once;
* `sigkill`: b dies with rows buffered; the group notices when its session times out;
* `sigstop`: b stalls (a long GC or IO pause, a frozen VM) with rows buffered, for longer than
  its session; a takes over b's partitions and writes them; then b is continued: it finds out
  it is no longer a member, gives up the partitions and rejoins. Whatever b still had buffered
  now belongs to a, which has written it already.

In the first two, a replacement worker c joins afterwards, so two partitions are taken from a
while it is writing them (a revocation of live partitions, flushed before they move); in the
third, b's rejoining does the same. At the end bronze must hold every produced offset exactly
once, and the committed offsets must be the produced ones.

The same runs (SIGKILL, SIGSTOP) with the lake on a real S3 server and a state dir per worker:
nothing shared but the broker and the bucket. There a worker that lost a commit race leaves its
file unlisted (`binlake.bronze.data_files`); such orphans are allowed when every offset they hold
is listed elsewhere.

The stalled worker's race is pinned down without a broker in tests/streams/test_rebalance.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from binlake.storage import LakeStorage

PARTITIONS = 4
ALL = set(range(PARTITIONS))
FLUSH_SECONDS = 5
WORKER_SETTINGS = {
    "BINLAKE_BRONZE__FLUSH_ROWS": "1000",
    # long enough that a worker stopped between two flushes has rows buffered
    "BINLAKE_BRONZE__FLUSH_SECONDS": str(FLUSH_SECONDS),
}


@pytest.mark.integration
@pytest.mark.timeout(400)
@pytest.mark.parametrize(
    "stop_signal",
    [signal.SIGTERM, signal.SIGKILL, signal.SIGSTOP],
    ids=["sigterm", "sigkill", "sigstop"],
)
def test_survivor_takes_over_and_bronze_stays_exactly_once(
    tmp_path: Path, kafka, processes, bronze_kit, stop_signal: signal.Signals
) -> None:
    lake_dir = tmp_path / "lake"
    env = bronze_kit.worker_env(kafka, lake_dir, tmp_path / "state", **WORKER_SETTINGS)
    run_rebalance(
        tmp_path, kafka, processes, bronze_kit, stop_signal, lake_dir, dict.fromkeys("abc", env)
    )


@pytest.mark.integration
@pytest.mark.timeout(400)
@pytest.mark.parametrize(
    "stop_signal", [signal.SIGKILL, signal.SIGSTOP], ids=["sigkill", "sigstop"]
)
def test_workers_sharing_only_broker_and_bucket_stay_exactly_once(
    tmp_path: Path, kafka, processes, bronze_kit, s3_lake, stop_signal: signal.Signals
) -> None:
    """The same on an S3 lake (the test session's SeaweedFS), each worker with a state dir of
    its own: no disk shared, so the manifest's create-once commits are all that keep two
    writers of one partition apart."""
    envs = {
        name: bronze_kit.worker_env(
            kafka,
            s3_lake.storage_url,
            tmp_path / f"state-{name}",
            **s3_lake.env(),
            **WORKER_SETTINGS,
        )
        for name in "abc"
    }
    lake = LakeStorage.from_url(s3_lake.storage_url, s3_lake.storage_options)
    summary = run_rebalance(tmp_path, kafka, processes, bronze_kit, stop_signal, lake, envs)
    assert not (tmp_path / "lake").exists()
    print(f"unlisted files of lost commit races: {summary.orphans}")


def run_rebalance(
    tmp_path: Path,
    kafka,
    processes,
    kit,
    stop_signal: signal.Signals,
    lake: Path | LakeStorage,
    envs: dict[str, dict[str, str]],
):
    """Workers a and b (then c) with `envs[name]` writing `lake`; b stopped by `stop_signal`;
    bronze checked exactly-once at the end. Returns the bronze summary."""
    began = time.monotonic()
    orders = kafka.table()
    topic = orders.topic
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(10)
    logs = {name: tmp_path / f"worker-{name}.log" for name in ("a", "b", "c")}
    all_logs = list(logs.values())

    def assignment(name: str) -> set[int]:
        return kit.assigned_partitions(logs[name], topic) or set()

    def coverage() -> dict[int, int]:
        return kit.manifest_coverage(lake, topic)

    def advanced(since: dict[int, int], partitions: set[int], by: int = 1) -> bool:
        now = coverage()
        return all(now.get(p, 0) >= since.get(p, 0) + by for p in partitions)

    producer = kit.ChangeProducer(kafka.bootstrap, orders, PARTITIONS, rows_per_second=70)
    producer.start()
    workers = []
    b = None
    try:
        a = processes.add(kit.start_worker(envs["a"], logs["a"]))
        workers.append(("a", a))
        kit.wait_for(
            lambda: assignment("a") == ALL, 90, "worker a to own every partition", all_logs
        )
        b = processes.add(kit.start_worker(envs["b"], logs["b"]))
        kit.wait_for(
            lambda: len(assignment("a")) == 2 and len(assignment("b")) == 2,
            90,
            "a and b to own two partitions each",
            all_logs,
        )
        b_partitions = assignment("b")
        assert assignment("a") == ALL - b_partitions
        for _ in range(2):  # b's first flush holds the backlog; the second is steady state
            reached = coverage()
            kit.wait_for(lambda r=reached: advanced(r, b_partitions), 60, "b to write", all_logs)
        # a moment late in b's flush cycle: it has buffered rows
        time.sleep(random.uniform(0.5, 0.85) * FLUSH_SECONDS)
        print(
            f"\nb owns {sorted(b_partitions)}; manifest at {coverage()} "
            f"({time.monotonic() - began:.0f}s); sending {stop_signal.name}"
        )

        os.kill(b.pid, stop_signal)  # by PID: the process this test started
        if stop_signal == signal.SIGSTOP:
            stopped_at = coverage()
        else:
            b.wait(60)
            stopped_at = coverage()
            if stop_signal == signal.SIGTERM:
                assert b.returncode == 0, kit.log_text(logs["b"])[-4000:]
                flushed = [
                    line
                    for line in kit.log_text(logs["b"]).splitlines()
                    if "shutdown: flushed" in line
                ]
                print(f"b: {flushed[-1].split('] ')[-1]}")
            else:
                assert b.returncode == -signal.SIGKILL
        took_over = kit.wait_for(
            lambda: assignment("a") == ALL, 90, "a to take over b's partitions", all_logs
        )
        kit.wait_for(
            lambda: advanced(stopped_at, b_partitions, by=100),
            60,
            "a to write b's former partitions",
            all_logs,
        )
        print(
            f"a owns every partition {took_over:.1f}s after the {stop_signal.name}; "
            f"manifest at {coverage()}"
        )

        if stop_signal == signal.SIGSTOP:
            os.kill(b.pid, signal.SIGCONT)
            workers.append(("b", b))
            rejoined = "b"
        else:
            c = processes.add(kit.start_worker(envs["c"], logs["c"]))
            workers.append(("c", c))
            rejoined = "c"
        # a gives up two partitions while it is writing them
        kit.wait_for(
            lambda: (
                len(assignment(rejoined)) == 2 and assignment("a") == ALL - assignment(rejoined)
            ),
            90,
            f"a and {rejoined} to own two partitions each",
            all_logs,
        )
        print(
            f"{rejoined} joined: a owns {sorted(assignment('a'))}, {rejoined} owns "
            f"{sorted(assignment(rejoined))} ({time.monotonic() - began:.0f}s)"
        )
        settled = coverage()
        kit.wait_for(lambda: advanced(settled, ALL), 60, "both to write", all_logs)
    finally:
        if b is not None and b.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(b.pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
        producer.stop()

    counts = producer.offsets_per_partition()
    caught_up = kit.wait_for(
        lambda: kit.manifest_covers(lake, topic, counts),
        120,
        f"the manifest to cover {counts}",
        all_logs,
    )
    for name, worker in workers:
        assert processes.stop(worker) == 0, kit.log_text(logs[name])[-4000:]

    summary = kit.assert_exactly_once(lake, topic, producer.delivered)
    assert kit.committed_offsets(admin, topic, PARTITIONS, kafka.group) == counts
    print(
        f"{summary.rows} records in {summary.files} files (per partition "
        f"{summary.files_per_partition}), {len(summary.temp_files)} temp files, "
        f"{len(summary.orphans)} unlisted; final catch-up {caught_up:.1f}s; "
        f"total {time.monotonic() - began:.0f}s"
    )
    return summary

"""The bronze worker SIGKILLed again and again while changes keep coming: nothing lost, nothing
twice.

A real Kafka broker (the test session's), a 3-partition CDC topic, a producer thread writing
Debezium changes for the whole test, and the real worker (`python -m binlake worker`) killed
with SIGKILL over and over, restarted after each kill:

* by the test, at a random moment (during start-up and the group join, or while it writes);
* by itself, at each failpoint of `binlake.failpoints` (`BINLAKE_FAILPOINTS`): half-way through
  a Parquet write, before the temp file's rename, between the rename and the manifest append,
  between the manifest append and the offset commit.

After the last restart, with the producer stopped, the manifest must cover each partition's
offsets 0..N-1 exactly once, each listed file must hold exactly its offsets (with what was
produced there), and no bronze Parquet file may be on disk outside the manifest.

Restarts are what takes the time. The worker is a static group member (Faust reads
`CONSUMER_GROUP_INSTANCE_ID`), so a restarted worker takes over its dead predecessor's
membership at once instead of waiting for its session to time out (that would add up to
`broker_session_timeout`, 10 s, per restart).
"""

from __future__ import annotations

import os
import random
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from binlake import failpoints

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

PARTITIONS = 3
KILLS_PER_FAILPOINT = 3
KILLS_WHILE_WRITING = 5  # by the test, at a random moment once the worker is processing
KILLS_WHILE_STARTING = 3  # by the test, at a random moment of start-up or the group join
FAILPOINT_PROBABILITY = 0.3  # at each pass: the worker writes a few files before it dies
FIRED = re.compile(r"binlake failpoint (\S+) fired: SIGKILL pid (\d+)")


def _plan(rng: random.Random) -> list[str]:
    lives = [name for name in failpoints.KILLS for _ in range(KILLS_PER_FAILPOINT)]
    lives += ["kill:writing"] * KILLS_WHILE_WRITING + ["kill:starting"] * KILLS_WHILE_STARTING
    rng.shuffle(lives)
    return lives


def test_sigkilled_worker_keeps_every_offset_exactly_once(
    tmp_path: Path, kafka, processes, bronze_kit
) -> None:
    kit = bronze_kit
    began = time.monotonic()
    seed = int(os.environ.get("BINLAKE_CRASH_SEED", random.SystemRandom().randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"\ncrash test seed {seed} (set BINLAKE_CRASH_SEED to replay the plan)")

    orders = kafka.table()
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(orders.topic, PARTITIONS, 1)])[orders.topic].result(10)
    lake_dir = tmp_path / "lake"
    env = kit.worker_env(
        kafka,
        lake_dir,
        tmp_path / "state",
        BINLAKE_BRONZE__FLUSH_ROWS="200",
        BINLAKE_BRONZE__FLUSH_SECONDS="0.5",
        CONSUMER_GROUP_INSTANCE_ID=f"{kafka.group}-member",
    )

    producer = kit.ChangeProducer(kafka.bootstrap, orders, PARTITIONS, rows_per_second=70)
    producer.start()
    kills: Counter[str] = Counter()
    logs: list[Path] = []
    try:
        for life, kind in enumerate(_plan(rng)):
            log = tmp_path / f"worker-{life:02d}-{kind.replace(':', '-')}.log"
            logs.append(log)
            life_env = dict(env)
            if kind in failpoints.KILLS:
                life_env[failpoints.ENV_VAR] = f"{kind}={FAILPOINT_PROBABILITY}"
            worker = processes.add(kit.start_worker(life_env, log))
            killed_by_test = False
            if kind == "kill:starting":
                time.sleep(rng.uniform(0.5, 10.0))
            elif kind == "kill:writing":
                kit.wait_for(
                    lambda w=worker, lg=log: (
                        kit.WORKER_READY in kit.log_text(lg) or w.poll() is not None
                    ),
                    90,
                    "the worker to be ready",
                    [log],
                )
                time.sleep(rng.uniform(0.2, 3.0))
            else:  # the worker kills itself at the failpoint; a hang is bounded, not expected
                kit.wait_for(lambda w=worker: w.poll() is not None, 120, f"{kind} to fire", [log])
            if worker.poll() is None:
                os.kill(worker.pid, signal.SIGKILL)  # by PID: the process this test started
                killed_by_test = True
            worker.wait(30)
            fired = FIRED.search(kit.log_text(log))
            assert worker.returncode == -signal.SIGKILL, (
                f"life {life} ({kind}) exited with {worker.returncode} without being killed:\n"
                + kit.log_text(log)[-4000:]
            )
            if fired:
                assert fired.group(1) == kind and int(fired.group(2)) == worker.pid
                kills[kind] += 1
            else:
                assert killed_by_test, f"life {life}: SIGKILL from nowhere"
                kills[kind if kind.startswith("kill:") else "kill:failpoint-did-not-fire"] += 1
            print(
                f"life {life:2d} {kind:22s} -> {'failpoint' if fired else 'test kill'}; "
                f"manifest at {kit.manifest_coverage(lake_dir, orders.topic)}, "
                f"produced {producer.rows} rows ({time.monotonic() - began:.0f}s)"
            )
    finally:
        producer.stop()
    killed_at = time.monotonic()

    # The last restart: nothing kills it; it catches up, then stops cleanly.
    counts = producer.offsets_per_partition()
    log = tmp_path / "worker-final.log"
    logs.append(log)
    worker = processes.add(kit.start_worker(env, log))
    caught_up = kit.wait_for(
        lambda: kit.manifest_covers(lake_dir, orders.topic, counts),
        180,
        f"the manifest to cover {counts}",
        [log],
    )
    assert processes.stop(worker) == 0, kit.log_text(log)[-4000:]

    summary = kit.assert_exactly_once(lake_dir, orders.topic, producer.delivered)
    assert kit.committed_offsets(admin, orders.topic, PARTITIONS, kafka.group) == counts

    print(f"SIGKILLs per cause: {dict(sorted(kills.items()))} (total {sum(kills.values())})")
    print(
        f"{summary.rows} records in {summary.files} bronze files "
        f"(per partition {summary.files_per_partition}); {len(summary.temp_files)} temp files "
        f"left by crashes; final catch-up {caught_up:.1f}s; kills phase "
        f"{killed_at - began:.0f}s; total {time.monotonic() - began:.0f}s"
    )
    assert sum(kills.values()) >= 20
    for name in failpoints.KILLS:
        assert kills[name] >= 1, f"failpoint {name} never fired: {dict(kills)}"
    assert kills["kill:writing"] >= 1

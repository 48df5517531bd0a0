"""`binlake replay` against a real Kafka broker and the real worker (`python -m binlake worker`).

Bronze is filled first (records produced, the worker run until every offset is committed, then
stopped), the bronze writer's group is reset with the real command, and the worker run again
until its committed offsets are back at the end. Rotation is by rows (`flush_rows`), so a lost
file read again comes out with its old bounds.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from binlake.bronze.manifest import Manifest, live_entries
from binlake.local_stack.components import BRONZE_WORKER
from binlake.local_stack.supervisor import Program, Supervisor
from binlake.storage import LakeStorage
from tests.support.debezium import BASE_TS_MS
from tests.support.processes import REPO, run_python_module, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PARTITIONS = 2
ROWS = 120


def run_replay(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_python_module(
        "binlake", "replay", "--table", "shop.orders", *args, env=env, timeout=120
    )


def fill_bronze(tmp_path: Path, kafka, processes, kit, while_running=None):
    """Rows 0..59 produced, then (a moment later, after `middle_ms`) rows 60..119; all in bronze."""
    orders = kafka.table()
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(orders.topic, PARTITIONS, 1)])[orders.topic].result(10)
    producer = kit.ChangeProducer(kafka.bootstrap, orders, PARTITIONS)
    for row in range(ROWS // 2):
        producer.produce_row(row)
    assert producer.producer.flush(30) == 0
    time.sleep(0.05)
    middle_ms = int(time.time() * 1000)
    time.sleep(0.05)
    for row in range(ROWS // 2, ROWS):
        producer.produce_row(row)
    assert producer.producer.flush(30) == 0
    counts = producer.offsets_per_partition()
    lake_dir = tmp_path / "lake"
    env = kit.worker_env(
        kafka,
        lake_dir,
        tmp_path / "state",
        BINLAKE_BRONZE__FLUSH_ROWS="15",
        BINLAKE_BRONZE__FLUSH_SECONDS="5",
    )
    seconds = kit.run_worker_until_committed(
        processes,
        env,
        admin,
        orders.topic,
        PARTITIONS,
        kafka.group,
        counts,
        tmp_path / "worker-fill.log",
        while_running,
    )
    print(f"\nbronze filled with {counts} records in {seconds:.1f}s")
    return SimpleNamespace(
        orders=orders,
        admin=admin,
        producer=producer,
        counts=counts,
        lake_dir=lake_dir,
        env=env,
        middle_ms=middle_ms,
        group=kafka.group,
    )


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The rows of the table the command printed: first cell -> the other cells."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("│"):
            first, *rest = (cell.strip() for cell in line.split("│")[1:-1])
            rows[first] = rest
    return rows


def commit_span(lake, partition: int, start: int) -> str:
    """The dry run's source commits of `partition` read from `start`: the first record's and the
    last's (`ChangeProducer`: row i committed at BASE_TS_MS + 2 s * i, its delete 1 ms later; a
    tombstone carries no commit time, the Kafka timestamp stands in)."""

    def committed_at(offset: int) -> datetime | None:
        op, row = lake.producer.delivered[(partition, offset)]
        if op == "x":
            return None
        return datetime.fromtimestamp((BASE_TS_MS + row * 2000 + (op == "d")) / 1000, UTC)

    first, last = committed_at(start), committed_at(lake.counts[partition] - 1)
    assert first is not None and last is not None, "a tombstone at an end: pick other offsets"
    return f"{first:%Y-%m-%d %H:%M:%S} to {last:%H:%M:%S}"


def snapshot(lake_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under bronze/: its bytes and modification time (ns)."""
    return {
        str(p.relative_to(lake_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted((lake_dir / "bronze").rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def replay_and_catch_up(lake, kit, processes, tmp_path, moved_to, *replay_args: str) -> float:
    """`binlake replay *replay_args` moves the bronze group's offsets to `moved_to`; then a
    worker runs until it has committed every produced record again. Seconds that took."""
    topic = lake.orders.topic
    reset = run_replay(lake.env, *replay_args)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert kit.committed_offsets(lake.admin, topic, PARTITIONS, lake.group) == moved_to
    return kit.run_worker_until_committed(
        processes,
        lake.env,
        lake.admin,
        topic,
        PARTITIONS,
        lake.group,
        lake.counts,
        tmp_path / "worker-replay.log",
    )


def test_replay_writes_lost_bronze_files_again_and_nothing_twice(
    tmp_path, kafka, processes, bronze_kit
) -> None:
    kit = bronze_kit
    lake = fill_bronze(tmp_path, kafka, processes, kit)
    topic = lake.orders.topic
    files = sorted(
        live_entries(Manifest(LakeStorage.from_url(str(lake.lake_dir))).entries()),
        key=lambda e: (e.partition, e.first_offset),
    )
    by_partition = {p: [e for e in files if e.partition == p] for p in range(PARTITIONS)}
    assert all(len(f) >= 4 for f in by_partition.values()), by_partition
    lost = [by_partition[0][1], by_partition[0][2], by_partition[1][2]]
    lost_bytes = {e.path: (lake.lake_dir / e.path).read_bytes() for e in lost}
    manifest = Manifest(LakeStorage.from_url(str(lake.lake_dir)))
    manifest_before = manifest.read_since(0)
    for entry in lost:
        (lake.lake_dir / entry.path).unlink()
    # From before the lost files: inside partition 0's first file, at partition 1's second.
    start = {0: by_partition[0][0].last_offset - 2, 1: by_partition[1][1].first_offset}

    dry = run_replay(lake.env, "--from-offset", f"0:{start[0]},1:{start[1]}", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    rows = table_rows(dry.stdout)
    for partition in range(PARTITIONS):
        # current, target, records read again, source commits of the first and last of them
        assert rows[str(partition)] == [
            str(lake.counts[partition]),
            str(start[partition]),
            str(lake.counts[partition] - start[partition]),  # no markers: all are records
            commit_span(lake, partition, start[partition]),
        ]
    total = sum(lake.counts[p] - start[p] for p in range(PARTITIONS))
    assert f"{total} record(s) would be read again" in dry.stdout
    for entry in lost:
        assert entry.path in dry.stdout.replace("\n", "")  # listed to be written again
    assert (
        kit.committed_offsets(lake.admin, topic, PARTITIONS, lake.group) == lake.counts
    )  # dry: unchanged

    seconds = replay_and_catch_up(
        lake, kit, processes, tmp_path, start, "--from-offset", f"0:{start[0]},1:{start[1]}"
    )

    summary = kit.assert_exactly_once(lake.lake_dir, topic, lake.producer.delivered)
    for path, data in lost_bytes.items():
        assert (lake.lake_dir / path).read_bytes() == data, f"{path} not restored as it was"
    # Restored under their names, as their entries describe them: no entry was added.
    assert manifest.read_since(0) == manifest_before
    print(f"replay rewrote {len(lost)} lost files in {seconds:.1f}s; {summary.files} files")


def test_replay_of_a_complete_range_leaves_bronze_unchanged(
    tmp_path, kafka, processes, bronze_kit
) -> None:
    kit = bronze_kit
    refusals = []

    def replay_while_the_worker_runs(env: dict[str, str]) -> None:
        refusals.append(run_replay(env, "--from-time", str(int(time.time() * 1000) - 60_000)))

    lake = fill_bronze(tmp_path, kafka, processes, kit, replay_while_the_worker_runs)
    [refused] = refusals
    assert refused.returncode == 1
    assert f"consumer group '{kafka.group}' is in use" in refused.stderr.replace("\n", "")
    topic = lake.orders.topic
    assert (
        kit.committed_offsets(lake.admin, topic, PARTITIONS, lake.group) == lake.counts
    )  # not moved
    before = snapshot(lake.lake_dir)
    # Offsets of the first record produced after `middle_ms`, per partition.
    expected = {
        p: min(o for (q, o), (_, row) in lake.producer.delivered.items() if q == p and row >= 60)
        for p in range(PARTITIONS)
    }

    seconds = replay_and_catch_up(
        lake, kit, processes, tmp_path, expected, "--from-time", str(lake.middle_ms)
    )

    assert snapshot(lake.lake_dir) == before  # manifest and files: same bytes, never rewritten
    print(f"replay of {expected}..{lake.counts} skipped in {seconds:.1f}s, bronze unchanged")


def test_the_dagster_job_resets_a_dashboard_group_and_leaves_bronze_alone(
    tmp_path, kafka, processes, bronze_kit, monkeypatch
) -> None:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    from binlake.settings import load_settings
    from dagster_defs.replay.jobs import build_replay_job
    from dagster_defs.replay.resources import KafkaConsumerGroups

    kit = bronze_kit
    lake = fill_bronze(tmp_path, kafka, processes, kit)
    topic = lake.orders.topic
    # A dashboard feed that has read the whole topic (and stopped).
    dashboard = f"{kafka.group}-dashboard"
    lake.admin.alter_consumer_group_offsets(
        [
            ConsumerGroupTopicPartitions(
                dashboard, [TopicPartition(topic, p, o) for p, o in lake.counts.items()]
            )
        ]
    )[dashboard].result(10)
    before = snapshot(lake.lake_dir)
    for name, value in lake.env.items():
        if name.startswith("BINLAKE_"):
            monkeypatch.setenv(name, value)
    job = build_replay_job(load_settings())

    result = job.execute_in_process(
        run_config={
            "ops": {
                "reset_consumer_group": {
                    "config": {
                        "table": "shop.orders",
                        "from_time": str(lake.middle_ms),
                        "group": dashboard,
                        "dry_run": False,
                    }
                }
            }
        },
        resources={"kafka": KafkaConsumerGroups(bootstrap_servers=kafka.bootstrap)},
    )

    assert result.success
    expected = {
        p: min(o for (q, o), (_, row) in lake.producer.delivered.items() if q == p and row >= 60)
        for p in range(PARTITIONS)
    }
    assert kit.committed_offsets(lake.admin, topic, PARTITIONS, dashboard) == expected
    assert (
        kit.committed_offsets(lake.admin, topic, PARTITIONS, lake.group) == lake.counts
    )  # bronze writer's
    assert snapshot(lake.lake_dir) == before


def test_replay_with_stop_worker_stops_the_supervised_worker_and_starts_it_again(
    tmp_path, kafka, processes, bronze_kit
) -> None:
    """The worker as `binlake up` runs it (a supervisord program under the state dir):
    `replay --stop-worker` stops it, resets its group, starts it again; it reads the range again
    and bronze stays as it was."""
    kit = bronze_kit
    lake = fill_bronze(tmp_path, kafka, processes, kit)
    topic = lake.orders.topic
    before = snapshot(lake.lake_dir)
    supervisor = Supervisor(Path(lake.env["BINLAKE_STATE_DIR"]))
    supervisor.write_config(
        [Program(BRONZE_WORKER, [sys.executable, "-m", "binlake", "worker"], directory=REPO)]
    )
    log = supervisor.log_file(BRONZE_WORKER)
    expected = {
        p: min(o for (q, o), (_, row) in lake.producer.delivered.items() if q == p and row >= 60)
        for p in range(PARTITIONS)
    }
    try:
        supervisor.start_daemon(lake.env)
        supervisor.start(BRONZE_WORKER)
        wait_for(lambda: kit.WORKER_READY in log.read_text(errors="replace"), 120, "worker", log)
        [first_pid] = [s.pid for s in supervisor.states()]

        replay = run_replay(lake.env, "--from-time", str(lake.middle_ms), "--stop-worker")

        assert replay.returncode == 0, replay.stdout + replay.stderr
        lines = replay.stdout.splitlines()
        assert lines[0] == "stopping the bronze worker"
        assert lines[-2:] == [
            "bronze worker started again",
            f"consumer group {lake.group} reset on {topic}",
        ]
        rows = table_rows(replay.stdout)
        for partition, target in expected.items():
            assert rows[str(partition)] == [str(lake.counts[partition]), str(target)]
        [state] = supervisor.states()
        assert state.state == "RUNNING" and state.pid != first_pid
        # The worker, started again from the targets, commits up to the end once more.
        wait_for(
            lambda: kit.committed_offsets(lake.admin, topic, PARTITIONS, lake.group) == lake.counts,
            120,
            "the restarted worker back at the end",
            log,
        )
    finally:
        supervisor.shutdown()
    assert snapshot(lake.lake_dir) == before  # read again, skipped: never written twice

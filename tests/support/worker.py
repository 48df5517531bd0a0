"""The real bronze worker on the session's Kafka broker: each test's own names on the broker
(fixture `kafka`), `binlake worker` processes, a producer thread writing changes for as long as a
test runs, and the exactly-once check of bronze against every offset the broker acknowledged
(fixture `bronze_kit` bundles what the crash and rebalance tests share)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from binlake.storage import LakeStorage
from tests.support.debezium import BASE_TS_MS, DebeziumTable
from tests.support.processes import REPO, log_text, wait_for


@dataclass(frozen=True)
class KafkaNames:
    """A test's own names on the session's broker (fixture `kafka_broker`, one per session):
    the Debezium topic prefix its CDC topics start with, and the bronze worker's app id, which
    is also its consumer group. Tests sharing the broker never see each other's topics (the
    worker subscribes to `<prefix>.<db>.<table>`) nor join each other's groups."""

    bootstrap: str
    prefix: str
    group: str

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.prefix}.dead-letter"  # the worker's default: <topic prefix>.dead-letter

    def table(self, db: str = "shop", table: str = "orders") -> DebeziumTable:
        return DebeziumTable(db, table, self.prefix)

    def env(self) -> dict[str, str]:
        """The BINLAKE_* settings that point a worker (or `binlake replay`) at these names."""
        return {
            "BINLAKE_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "BINLAKE_KAFKA__TOPIC_PREFIX": self.prefix,
            "BINLAKE_BRONZE__APP_ID": self.group,
        }


@pytest.fixture
def kafka(kafka_broker: str) -> KafkaNames:
    """This test's topic prefix and bronze consumer group, unique on the session's broker."""
    unique = uuid.uuid4().hex[:12]
    return KafkaNames(kafka_broker, prefix=f"t{unique}", group=f"bronze-{unique}")


# Lines the real worker logs (Faust's and aiokafka's own wording).
WORKER_READY = "Worker]: Ready"


def worker_env(
    kafka: KafkaNames, lake_dir: Path | str, state_dir: Path, **extra: str
) -> dict[str, str]:
    """The environment of a `binlake worker` process: ours without any BINLAKE_* setting (and
    without failpoints or a static group member id unless `extra` sets them), pointed at the
    test's own names on the broker. `lake_dir`: a directory or a lake URL (an object store's
    endpoint and keys then come in `extra`, as `S3Lake.env()` gives them)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BINLAKE_") and k != "CONSUMER_GROUP_INSTANCE_ID"
    }
    env.update(
        kafka.env(),
        BINLAKE_STORAGE_URL=str(lake_dir),
        BINLAKE_STATE_DIR=str(state_dir),
    )
    env.update(extra)
    return env


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    """`python -m binlake worker` (what `binlake up` supervises), output appended to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "binlake", "worker"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def start_ready_worker(processes: Any, env: dict[str, str], log: Path) -> subprocess.Popen:
    """The Faust worker (`streams.app.main`) with `env`, output appended to `log`, registered
    with the test's `processes`; returns once it logs that it is ready."""
    with open(log, "ab") as out:
        worker = processes.add(
            subprocess.Popen(
                [sys.executable, "-c", "from streams.app import main; main()"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )
    wait_for(lambda: WORKER_READY in log.read_text(errors="replace"), 60, "worker", log)
    return worker


def run_worker_until_committed(
    processes: Any,
    env: dict[str, str],
    admin: Any,
    topic: str,
    partitions: int,
    group: str,
    counts: dict[int, int],
    log: Path,
    while_running: Any = None,
) -> float:
    """Start the worker, wait until it committed `counts` (offset per partition of `topic`),
    call `while_running(env)`, stop it cleanly; the seconds it ran."""
    began = time.monotonic()
    worker = processes.add(start_worker(env, log))
    wait_for(
        lambda: committed_offsets(admin, topic, partitions, group) == counts,
        120,
        f"committed offsets {counts}",
        [log],
    )
    if while_running is not None:
        while_running(env)
    assert processes.stop(worker) == 0, log_text(log)[-4000:]
    return time.monotonic() - began


def bronze_offsets(lake: Any) -> Counter:
    """(partition, offset) -> how many bronze rows (over all manifest files) hold it."""
    import pyarrow.parquet as pq

    from binlake.bronze.manifest import Manifest

    seen: Counter = Counter()
    for entry in Manifest(lake).entries():
        table = pq.read_table(
            lake.full_path(entry.path),
            columns=["_partition", "_offset"],
            filesystem=lake.filesystem,
        )
        seen.update(
            zip(
                table.column("_partition").to_pylist(),
                table.column("_offset").to_pylist(),
                strict=True,
            )
        )
    return seen


_ASSIGNED = "Setting newly assigned partitions"


def assigned_partitions(log: Path, topic: str) -> set[int] | None:
    """Partitions of `topic` in the worker's latest assignment, as Faust logs it (a table row
    `| <topic> | {0-1, 3} |` after aiokafka's "Setting newly assigned partitions"); None before
    the first assignment."""
    text = log_text(log)
    start = text.rfind(_ASSIGNED)
    if start < 0:
        return None
    block = text[start:].split(" for group ", 1)[0]
    for line in block.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] == topic:
            partitions: set[int] = set()
            for part in cells[1].strip("{}").split(","):
                low, _, high = part.strip().partition("-")
                partitions.update(range(int(low), int(high or low) + 1))
            return partitions
    return set()


class ChangeProducer(threading.Thread):
    """Produces Debezium changes to every partition of `table`'s topic until `stop()`.

    Row `i` goes to partition `i % partitions`, committed at `BASE_TS_MS + i * 2 s` (so the
    stream crosses an hour boundary every 1800 rows): an insert, an update for every 5th row, a
    delete and its tombstone for every 10th. `delivered` maps each (partition, offset) the
    broker acknowledged to the (op, id) written there.
    """

    def __init__(
        self,
        bootstrap: str,
        table: DebeziumTable,
        partitions: int,
        *,
        rows_per_second: float = 70.0,
    ):
        super().__init__(name="change-producer", daemon=True)
        from confluent_kafka import Producer

        self.table = table
        self.partitions = partitions
        self.rows_per_second = rows_per_second
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
        self.delivered: dict[tuple[int, int], tuple[str, int]] = {}
        self.errors: list[str] = []
        self.rows = 0
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def _produce(self, id_: int, op: str, kv: tuple[bytes, bytes | None]) -> None:
        def delivered(err: Any, msg: Any) -> None:
            with self._lock:
                if err is not None:
                    self.errors.append(f"{op} {id_}: {err}")
                else:
                    self.delivered[(msg.partition(), msg.offset())] = (op, id_)

        self.producer.produce(
            self.table.topic,
            key=kv[0],
            value=kv[1],
            partition=id_ % self.partitions,
            on_delivery=delivered,
        )

    def produce_row(self, id_: int) -> None:
        ts = BASE_TS_MS + id_ * 2000
        self._produce(id_, "c", self.table.change("c", id_, ts_ms=ts, pos=4 + id_))
        if id_ % 5 == 0:
            self._produce(id_, "u", self.table.change("u", id_, ts_ms=ts, pos=5 + id_, qty=99))
        if id_ % 10 == 0:
            self._produce(id_, "d", self.table.change("d", id_, ts_ms=ts + 1, pos=6 + id_))
            self._produce(id_, "x", self.table.tombstone(id_))

    def run(self) -> None:
        started = time.monotonic()
        while not self._halt.is_set():
            due = int((time.monotonic() - started) * self.rows_per_second)
            while self.rows < due:
                self.produce_row(self.rows)
                self.rows += 1
            self.producer.poll(0)
            self._halt.wait(0.02)

    def stop(self) -> None:
        self._halt.set()
        self.join(30)
        remaining = self.producer.flush(30)
        if remaining or self.errors:
            raise AssertionError(f"{remaining} records undelivered; errors: {self.errors[:5]}")

    def offsets_per_partition(self) -> dict[int, int]:
        """Records acknowledged per partition; each partition's offsets must be 0..N-1 (this
        producer is not transactional, so no commit marker takes an offset)."""
        with self._lock:
            by_partition: dict[int, set[int]] = {p: set() for p in range(self.partitions)}
            for partition, offset in self.delivered:
                by_partition[partition].add(offset)
        counts = {}
        for partition, offsets in by_partition.items():
            assert offsets == set(range(len(offsets))), f"broker offsets of {partition} not dense"
            counts[partition] = len(offsets)
        return counts


def committed_offsets(admin: Any, topic: str, partitions: int, group: str) -> dict[int, int]:
    """`group`'s committed offsets of `topic`; -1001 means none committed. Retriable errors
    (the group coordinator still loading, as on a broker just started) are retried."""
    from confluent_kafka import (
        ConsumerGroupTopicPartitions,
        KafkaError,
        KafkaException,
        TopicPartition,
    )

    coordinator_not_ready = {
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
    }
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in range(partitions)]
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            result = admin.list_consumer_group_offsets([request])[group].result(10)
        except KafkaException as exc:
            error = exc.args[0]
            retriable = error.retriable() or error.code() in coordinator_not_ready
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        return {tp.partition: tp.offset for tp in result.topic_partitions}


LakeLike = Path | LakeStorage  # a local lake directory, or any lake (local or object store)


def lake_storage(lake: LakeLike) -> LakeStorage:
    """`lake` as a LakeStorage (a directory is opened as the local lake it is)."""
    return lake if isinstance(lake, LakeStorage) else LakeStorage.from_url(str(lake))


def manifest_coverage(lake: LakeLike, topic: str) -> dict[int, int]:
    """Per partition of `topic`: the manifest's highest offset + 1 (0 if it has none)."""
    from binlake.bronze.manifest import Manifest

    covered: dict[int, int] = {}
    for entry in Manifest(lake_storage(lake)).entries():
        if entry.topic == topic:
            covered[entry.partition] = max(covered.get(entry.partition, 0), entry.last_offset + 1)
    return covered


def manifest_covers(lake: LakeLike, topic: str, counts: dict[int, int]) -> bool:
    """True once the manifest reaches offset `counts[p] - 1` of each partition `p`."""
    covered = manifest_coverage(lake, topic)
    return all(covered.get(p, 0) >= n for p, n in counts.items())


@dataclass
class BronzeSummary:
    files: int
    rows: int
    temp_files: list[str]
    files_per_partition: dict[int, int]
    # Unlisted data files (lost commit races, replaced by compaction), offsets listed elsewhere.
    orphans: list[str] = field(default_factory=list)


def bronze_files(storage: LakeStorage) -> list[tuple[str, int]]:
    """(path relative to the lake, bytes) of every file under bronze/ but the manifest's and the
    dead letters' (bronze/_*), listed through the lake's filesystem."""
    import pyarrow.fs as pafs

    from binlake.bronze.layout import BRONZE_DIR

    selector = pafs.FileSelector(
        storage.full_path(BRONZE_DIR), recursive=True, allow_not_found=True
    )
    prefix = storage.full_path("")
    found = []
    for info in storage.filesystem.get_file_info(selector):
        relative = info.path[len(prefix) :].lstrip("/")
        if info.type == pafs.FileType.File and not relative.startswith(f"{BRONZE_DIR}/_"):
            found.append((relative, int(info.size or 0)))
    return sorted(found)


def held_runs(entry: Any) -> list[tuple[int, int]]:
    """The inclusive offset runs a manifest entry's file holds rows of (a compacted file's
    `offset_ranges`, or first..last; the producers here leave no offset without a record)."""
    if entry.offset_ranges:
        return [(first, last) for first, last in entry.offset_ranges]
    return [(entry.first_offset, entry.last_offset)]


def _read_offsets(storage: LakeStorage, path: str, columns: list[str]) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(storage.full_path(path), columns=columns, filesystem=storage.filesystem)


def assert_exactly_once(
    lake: LakeLike, topic: str, delivered: dict[tuple[int, int], tuple[str, int]]
) -> BronzeSummary:
    """Bronze, as readers see it through the manifest, holds each delivered offset exactly once.

    Readers take the live entries (`live_entries`: the last entry of a path; a replay may write a
    lost file again with other bounds). For each partition those files cover offsets 0..N-1 with
    no gap and no overlap; every file exists and holds exactly the offsets its entry names (with
    the op and id that were produced there). A bronze data file outside the manifest is allowed
    only as an orphan of a lost commit race (`binlake.bronze.data_files`: two writers of the
    same offsets, only one listed; the compactor deletes it once old) or a file a compacted one
    replaced (deleted after its retention): every offset it holds is listed in another file,
    with the same op and id. A crash may also leave temporary or staged
    files, hidden, which readers never list. `lake`: a local lake directory or any LakeStorage.
    """
    from binlake.bronze.data_files import STAGED_SUFFIX
    from binlake.bronze.manifest import Manifest, live_entries

    storage = lake_storage(lake)
    counts: dict[int, int] = {}
    for partition, offset in delivered:
        counts[partition] = max(counts.get(partition, 0), offset + 1)
    assert len(delivered) == sum(counts.values()), "broker offsets are not dense"

    entries = [entry for entry in live_entries(Manifest(storage).entries()) if entry.topic == topic]
    problems: list[str] = []
    for partition, n in sorted(counts.items()):
        # a compacted file may hold several runs of a partition (its other hours' offsets are
        # in other files): the runs of every file, in offset order, must tile 0..n-1
        runs = sorted(
            (first, last, e.path)
            for e in entries
            if e.partition == partition
            for first, last in held_runs(e)
        )
        expected_first = 0
        for first, last, path in runs:
            if first > expected_first:
                problems.append(f"[{partition}] gap {expected_first}..{first - 1}")
            elif first < expected_first:
                problems.append(
                    f"[{partition}] overlap: {path} starts a run at {first}, "
                    f"offsets before {expected_first} are already covered"
                )
            expected_first = max(expected_first, last + 1)
        if expected_first != n:
            problems.append(f"[{partition}] covered up to {expected_first - 1}, produced {n}")
    unknown = {e.partition for e in entries} - set(counts)
    if unknown:
        problems.append(f"entries for partitions never produced to: {unknown}")

    sizes = dict(bronze_files(storage))
    columns = ["_topic", "_partition", "_offset", "_op", "id"]
    seen: Counter = Counter()  # what a reader sees: every file the manifest lists, read together
    for entry in entries:
        if entry.path not in sizes:
            problems.append(f"{entry.path}: in the manifest, not in the lake")
            continue
        table = _read_offsets(storage, entry.path, columns)
        offsets = table.column("_offset").to_pylist()
        seen.update((entry.partition, offset) for offset in offsets)
        expected = [o for first, last in held_runs(entry) for o in range(first, last + 1)]
        if sorted(offsets) != expected:
            problems.append(
                f"{entry.path}: offsets {offsets[:3]}..{offsets[-3:]} != entry's runs "
                f"{held_runs(entry)}"
            )
        if entry.rows != table.num_rows or entry.bytes != sizes[entry.path]:
            problems.append(f"{entry.path}: rows/bytes differ from its entry")
        if set(table.column("_partition").to_pylist()) != {entry.partition} or set(
            table.column("_topic").to_pylist()
        ) != {topic}:
            problems.append(f"{entry.path}: rows of another topic-partition")
        got = zip(
            offsets, table.column("_op").to_pylist(), table.column("id").to_pylist(), strict=True
        )
        for offset, op, id_ in got:
            if delivered.get((entry.partition, offset)) != (op, id_):
                problems.append(
                    f"{entry.path}: offset {offset} holds ({op}, {id_}), produced "
                    f"{delivered.get((entry.partition, offset))}"
                )
                break
    assert not problems, "bronze is not exactly-once:\n" + "\n".join(problems[:40])
    assert sum(seen.values()) == len(delivered)
    assert set(seen) == set(delivered)

    listed = {e.path for e in entries}
    unlisted = [path for path in sizes if path.endswith(".parquet") and path not in listed]
    orphan_problems = []
    for path in unlisted:
        table = _read_offsets(storage, path, columns)
        rows = zip(
            table.column("_topic").to_pylist(),
            table.column("_partition").to_pylist(),
            table.column("_offset").to_pylist(),
            table.column("_op").to_pylist(),
            table.column("id").to_pylist(),
            strict=True,
        )
        for topic_, partition, offset, op, id_ in rows:
            if topic_ != topic or (partition, offset) not in seen:
                orphan_problems.append(f"{path}: offset {partition}:{offset} is listed nowhere")
                break
            if delivered[(partition, offset)] != (op, id_):
                orphan_problems.append(f"{path}: offset {partition}:{offset} holds other data")
                break
    assert not orphan_problems, (
        "bronze files outside the manifest that are not orphans of a lost commit race (an "
        "unlisted file is allowed only if every offset it holds is listed in another file): "
        + "; ".join(orphan_problems[:10])
    )
    temp_files = sorted(
        path for path in sizes if path.endswith(".tmp") or path.endswith(STAGED_SUFFIX)
    )
    for temp in temp_files:
        assert Path(temp).name.startswith("."), f"temporary file not hidden: {temp}"
    files_per_partition: dict[int, int] = {}
    for entry in entries:
        files_per_partition[entry.partition] = files_per_partition.get(entry.partition, 0) + 1
    return BronzeSummary(
        len(entries), sum(seen.values()), temp_files, files_per_partition, sorted(unlisted)
    )


@pytest.fixture
def bronze_kit() -> ModuleType:
    """What crash and rebalance tests share: this module (its functions above)."""
    return sys.modules[__name__]

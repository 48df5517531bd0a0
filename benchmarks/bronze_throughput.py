#!/usr/bin/env python
"""Bronze writer throughput against a backlog on a real Kafka broker.

    uv run python benchmarks/bronze_throughput.py --events 200000

One run:

1. starts its own KRaft broker (Apache Kafka from `binlake setup`'s Maven cache) on a free
   port, its data in the run's temp directory (stopped by PID at the end);
2. fills one topic `binlake.shop.orders` with N Debezium 3.0.7 MySQL change events as Kafka
   Connect's JsonConverter (schemas.enable=true) writes them: a 12-column orders table, inserts,
   updates (before + after image), deletes each followed by a tombstone, a full `source` block;
3. (a) raw ceiling: a confluent-kafka consume loop over the topic that does nothing but count
   (and, as an extra, the same loop with aiokafka, the client Faust uses);
4. (b) the real bronze worker (`python -m binlake worker`, BINLAKE_* env, a temp lake) from the
   same topic until the manifest covers all N offsets; peak RSS from /proc/<pid>/status VmHWM,
   CPU time from /proc/<pid>/stat;
5. (c) the writer logic alone: `BronzeWorker.handle` over pre-fetched records (no Faust), plus
   the decode step alone, so Faust's share is visible;
6. with `--extras`: (d) Faust with an agent that only acks (binlake's app settings), and (e) a
   prototype worker without Faust (a confluent-kafka loop around `BronzeWorker.handle`).

`--no-broker` skips all of that and prints the per-event cost of decoding, `build_table`,
`to_parquet_bytes` and the rest of `BronzeWorker.handle` (best of `--repeat` runs). Results and
profiles: benchmarks/README.md.

Throughputs are steady-state: the worker's rate is measured from the first bronze file to the
last (so the consumer-group join and Faust's start-up are not in it; the end-to-end figure that
includes them is printed too). The expected last offset of each partition comes from the
producer's delivery reports.

The last line printed is one JSON object (`events`, `raw_events_per_s`, `writer_events_per_s`,
`ratio`, `peak_rss_mb`, ...). Extra Faust settings can be passed to the worker through its
environment, e.g. `--worker-env CONSUMER_MAX_FETCH_SIZE=8388608` (Faust reads them by name).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from binlake.bronze.manifest import Manifest
from binlake.local_stack.foreground import start_kafka_broker, stop_process
from binlake.storage import LakeStorage
from tests.support.debezium import connect_field as _f
from tests.support.debezium import decimal_field as _decimal
from tests.support.debezium import envelope_schema, key_schema, unscaled

PREFIX = "binlake"
DB = "shop"
TABLE = "orders"
TOPIC = f"{PREFIX}.{DB}.{TABLE}"
# 2026-11-21 09:58:20 UTC: a run of more than 100 s of source time crosses an hour boundary.
BASE_TS_MS = 1_795_255_200_000 - 100_000
CLK_TCK = os.sysconf("SC_CLK_TCK")

# ---------------------------------------------------------------------------------------------
# Debezium 3.0.7 MySQL records, JsonConverter with schemas (compact, field order as Jackson)
# ---------------------------------------------------------------------------------------------


STATUSES = ("new", "paid", "packed", "shipped", "delivered", "cancelled")

# CREATE TABLE orders (id BIGINT PK, customer_id BIGINT, status ENUM(...), currency CHAR(3),
#   total DECIMAL(12,2), discount DECIMAL(10,2) NULL, items INT, note VARCHAR(200) NULL,
#   placed_at DATETIME(6), updated_at TIMESTAMP, ship_date DATE NULL, is_gift TINYINT(1) NULL)
# with decimal.handling.mode=precise, time.precision.mode=adaptive_time_microseconds.
ORDER_COLUMNS = [
    _f("id", "int64"),
    _f("customer_id", "int64"),
    _f(
        "status",
        "string",
        name="io.debezium.data.Enum",
        version=1,
        parameters={"allowed": ",".join(STATUSES)},
    ),
    _f("currency", "string"),
    _decimal("total", 12, 2),
    _decimal("discount", 10, 2, optional=True),
    _f("items", "int32"),
    _f("note", "string", True),
    _f("placed_at", "int64", name="io.debezium.time.MicroTimestamp", version=1),
    _f(
        "updated_at",
        "string",
        name="io.debezium.time.ZonedTimestamp",
        version=1,
        default="1970-01-01T00:00:00Z",
    ),
    _f("ship_date", "int32", True, name="io.debezium.time.Date", version=1),
    _f("is_gift", "int16", True),
]

_VALUE_SCHEMA = envelope_schema(ORDER_COLUMNS, f"{DB}.{TABLE}", PREFIX)
_VALUE_HEAD = b'{"schema":' + orjson.dumps(_VALUE_SCHEMA) + b',"payload":'
_KEY_HEAD = b'{"schema":' + orjson.dumps(key_schema(f"{DB}.{TABLE}", PREFIX)) + b',"payload":'
_NOTES = (
    "leave at the door",
    "gift wrap please, the card says: happy birthday Ana!",
    "call before delivery",
    "fragile — glass inside",
)


def _zoned(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


@dataclass
class Workload:
    """A shop's order traffic as Debezium emits it: c, u (status changes), d + tombstone."""

    partitions: int = 1
    source_rate: int = 1000  # events per second of source (commit) time
    seed: int = 42
    rng: random.Random = field(init=False)
    live: dict[int, dict[str, Any]] = field(default_factory=dict, init=False)
    live_ids: list[int] = field(default_factory=list, init=False)
    next_id: int = field(default=1_000_000, init=False)
    pos: int = field(default=4, init=False)
    emitted: int = field(default=0, init=False)
    ops: dict[str, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def _ts(self) -> int:
        # MySQL ts_ms has second resolution in the binlog (and on MariaDB).
        return BASE_TS_MS + (self.emitted * 1000 // self.source_rate) // 1000 * 1000

    def _new_row(self, id_: int, ts_ms: int) -> dict[str, Any]:
        rng = self.rng
        items = rng.randint(1, 9)
        discount = rng.choice((None, None, None, rng.randint(100, 2000)))
        return {
            "id": id_,
            "customer_id": rng.randint(1, 250_000),
            "status": "new",
            "currency": "EUR",
            "total": unscaled(rng.randint(499, 250_000)),
            "discount": None if discount is None else unscaled(discount),
            "items": items,
            "note": rng.choice((None, None, None, *_NOTES)),
            "placed_at": ts_ms * 1000 + rng.randint(0, 999_999),
            "updated_at": _zoned(ts_ms),
            "ship_date": None,
            "is_gift": rng.choice((0, 0, 0, 1, None)),
        }

    def _partition(self, id_: int) -> int:
        return id_ % self.partitions

    def _key(self, id_: int) -> bytes:
        return _KEY_HEAD + b'{"id":' + str(id_).encode() + b"}}"

    def _value(self, op: str, before: Any, after: Any, ts_ms: int) -> bytes:
        rng = self.rng
        self.pos += rng.randint(250, 700)
        captured = ts_ms + rng.randint(5, 400)
        payload = {
            "before": before,
            "after": after,
            "source": {
                "version": "3.0.7.Final",
                "connector": "mysql",
                "name": PREFIX,
                "ts_ms": ts_ms,
                "snapshot": "false",
                "db": DB,
                "sequence": None,
                "ts_us": ts_ms * 1000,
                "ts_ns": ts_ms * 1_000_000,
                "table": TABLE,
                "server_id": 1,
                "gtid": f"3e11fa47-71ca-11e1-9e33-c80aa9429562:{self.pos // 300}",
                "file": "mysql-bin.000042",
                "pos": self.pos,
                "row": 0,
                "thread": 7 + self.emitted % 12,
                "query": None,
            },
            "transaction": None,
            "op": op,
            "ts_ms": captured,
            "ts_us": captured * 1000 + 417,
            "ts_ns": captured * 1_000_000 + 417_980,
        }
        return _VALUE_HEAD + orjson.dumps(payload) + b"}"

    def events(self, n: int) -> Iterator[tuple[int, bytes, bytes | None, int]]:
        """(partition, key, value or None, record timestamp ms) for `n` records."""
        rng = self.rng
        while self.emitted < n:
            ts_ms = self._ts()
            roll = rng.random()
            if not self.live_ids or roll < 0.30:
                op, id_ = "c", self.next_id
                self.next_id += 1
                row = self._new_row(id_, ts_ms)
                self.live[id_] = row
                self.live_ids.append(id_)
                value = self._value("c", None, row, ts_ms)
            elif roll < 0.88 or self.emitted + 1 >= n:
                op = "u"
                id_ = self.live_ids[rng.randrange(len(self.live_ids))]
                before = self.live[id_]
                after = dict(before)
                index = STATUSES.index(before["status"])
                after["status"] = STATUSES[min(index + 1, len(STATUSES) - 2)]
                after["updated_at"] = _zoned(ts_ms)
                if after["status"] == "shipped":
                    after["ship_date"] = ts_ms // 86_400_000
                self.live[id_] = after
                value = self._value("u", before, after, ts_ms)
            else:
                op = "d"
                index = rng.randrange(len(self.live_ids))
                id_ = self.live_ids[index]
                self.live_ids[index] = self.live_ids[-1]
                self.live_ids.pop()
                before = self.live.pop(id_)
                value = self._value("d", before, None, ts_ms)
            key = self._key(id_)
            partition = self._partition(id_)
            self.ops[op] = self.ops.get(op, 0) + 1
            self.emitted += 1
            yield partition, key, value, ts_ms + 20
            if op == "d":
                self.ops["x"] = self.ops.get("x", 0) + 1  # binlake's tombstone op
                self.emitted += 1
                yield partition, key, None, ts_ms + 20
            if len(self.live_ids) > 200_000:  # keep the generator's memory bounded
                index = rng.randrange(len(self.live_ids))
                gone, self.live_ids[index] = self.live_ids[index], self.live_ids[-1]
                self.live_ids.pop()
                self.live.pop(gone, None)


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


def proc_status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ---------------------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------------------


@dataclass
class Filled:
    events: int
    bytes: int
    last_offsets: dict[int, int]  # partition -> last offset (from delivery reports)
    ops: dict[str, int]
    seconds: float


def fill_topic(bootstrap: str, n: int, partitions: int, compression: str) -> Filled:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    # The records carry their source time (BASE_TS_MS) as their Kafka timestamp, more than the
    # broker's default 7 days of time retention ago: without this Kafka deletes the backlog's
    # older segments while the run reads it.
    topic = NewTopic(TOPIC, partitions, 1, config={"retention.ms": "-1"})
    admin.create_topics([topic])[TOPIC].result(30)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "compression.type": compression,
            "acks": "all",
        }
    )
    last: dict[int, int] = {}
    errors: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            partition = msg.partition()
            if msg.offset() > last.get(partition, -1):
                last[partition] = msg.offset()

    workload = Workload(partitions=partitions)
    total = 0
    start = time.monotonic()
    produce = producer.produce
    for partition, key, value, ts in workload.events(n):
        total += len(key) + (len(value) if value is not None else 0)
        while True:
            try:
                produce(
                    TOPIC,
                    key=key,
                    value=value,
                    partition=partition,
                    timestamp=ts,
                    on_delivery=delivered,
                )
                break
            except BufferError:
                producer.poll(0.05)
        if not workload.emitted % 10_000:
            producer.poll(0)
    if producer.flush(120) != 0:
        raise SystemExit("producer could not deliver every record within 120 s")
    if errors:
        raise SystemExit(f"{len(errors)} records not delivered, e.g. {errors[0]}")
    delivered_count = sum(v + 1 for v in last.values())
    if delivered_count != n:
        raise SystemExit(f"expected offsets 0..{n - 1}, delivery reports say {last}")
    return Filled(n, total, last, dict(workload.ops), time.monotonic() - start)


@dataclass
class Rate:
    events: int
    bytes: int
    seconds: float  # steady-state window
    total_seconds: float = 0.0  # including start-up
    cpu_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0

    def summary(self, more: str = "") -> str:
        """`N events/s, M MB/s (events in seconds<more>)`."""
        return (
            f"{self.events_per_s:,.0f} events/s, {self.mb_per_s:,.1f} MB/s "
            f"({self.events} in {self.seconds:.2f}s{more})"
        )


def _done(seen: dict[int, int], last: dict[int, int]) -> bool:
    return all(seen.get(p, -1) >= offset for p, offset in last.items())


def backlog_reader(bootstrap: str, filled: Filled, purpose: str) -> Consumer:
    """A consumer of a group of its own, assigned every partition of the backlog from 0."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{purpose}-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in filled.last_offsets])
    return consumer


def raw_confluent(bootstrap: str, filled: Filled, timeout: float) -> Rate:
    consumer = backlog_reader(bootstrap, filled, "raw")
    seen: dict[int, int] = {}
    count = nbytes = 0
    start = time.monotonic()
    first = None
    deadline = start + timeout
    try:
        while not _done(seen, filled.last_offsets):
            if time.monotonic() > deadline:
                raise SystemExit(f"raw consumer: timed out after {timeout}s at {count} records")
            for msg in consumer.consume(10_000, 1.0):
                if msg.error() is not None:
                    raise KafkaException(msg.error())
                if first is None:
                    first = time.monotonic()
                count += 1
                key, value = msg.key(), msg.value()
                nbytes += (len(key) if key else 0) + (len(value) if value else 0)
                seen[msg.partition()] = msg.offset()
    finally:
        consumer.close()
    end = time.monotonic()
    # Steady state: from the first record (connection set-up excluded).
    return Rate(count, nbytes, end - (first or start), end - start)


def raw_aiokafka(bootstrap: str, filled: Filled, timeout: float) -> Rate:
    """The same do-nothing loop with aiokafka (Faust's client), with Faust's fetch sizes."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition as ATP

    async def run() -> Rate:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=1500,  # what Faust passes
            max_partition_fetch_bytes=1024**2,  # Faust's consumer_max_fetch_size default
        )
        await consumer.start()
        consumer.assign([ATP(TOPIC, p) for p in filled.last_offsets])
        seen: dict[int, int] = {}
        count = nbytes = 0
        start = time.monotonic()
        first = None
        try:
            while not _done(seen, filled.last_offsets):
                if time.monotonic() - start > timeout:
                    raise SystemExit(f"aiokafka: timed out after {timeout}s at {count} records")
                batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                for tp, messages in batches.items():
                    if first is None:
                        first = time.monotonic()
                    for msg in messages:
                        key, value = msg.key, msg.value
                        nbytes += (len(key) if key else 0) + (len(value) if value else 0)
                    count += len(messages)
                    if messages:
                        seen[tp.partition] = messages[-1].offset
        finally:
            await consumer.stop()
        end = time.monotonic()
        return Rate(count, nbytes, end - (first or start), end - start)

    return asyncio.run(run())


class ManifestReader:
    """Follows the lake's bronze manifest from a commit cursor (`Manifest.read_since`)."""

    def __init__(self, lake: Path):
        self.manifest = Manifest(LakeStorage.from_url(str(lake)))
        self.cursor = 0
        self.entries: list[dict[str, Any]] = []
        self.covered: dict[int, int] = {}  # partition -> highest last_offset
        self.rows = 0

    def poll(self) -> int:
        new, self.cursor = self.manifest.read_since(self.cursor)
        for entry in new:
            if entry.topic != TOPIC:
                continue
            self.entries.append(asdict(entry))
            self.rows += entry.rows
            p = entry.partition
            self.covered[p] = max(self.covered.get(p, -1), entry.last_offset)
        return len(new)


def worker_env(bootstrap: str, workdir: Path, lake: Path, flush_rows: int | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BINLAKE_")}
    env.update(
        BINLAKE_KAFKA__BOOTSTRAP_SERVERS=bootstrap,
        BINLAKE_KAFKA__TOPIC_PREFIX=PREFIX,
        BINLAKE_STORAGE_URL=str(lake),
        BINLAKE_STATE_DIR=str(workdir / "state"),
        # Each phase its own consumer group, so none resumes from another's commits.
        BINLAKE_BRONZE__APP_ID=f"binlake-bronze-{lake.name}",
        PYTHONUNBUFFERED="1",
    )
    if flush_rows:
        env["BINLAKE_BRONZE__FLUSH_ROWS"] = str(flush_rows)
    return env


def worker_run(
    bootstrap: str,
    filled: Filled,
    workdir: Path,
    *,
    timeout: float,
    flush_rows: int | None,
    extra_env: dict[str, str],
    profile: str | None,
    name: str = "worker",
    command: list[str] | None = None,
) -> Rate:
    """Run a bronze writer process over the backlog; time it by the manifest it writes."""
    lake = workdir / f"lake-{name}"
    env = worker_env(bootstrap, workdir, lake, flush_rows)
    env.update(extra_env)
    command = command or [sys.executable, "-m", "binlake", "worker"]
    log_path = workdir / f"{name}.log"
    reader = ManifestReader(lake)
    with open(log_path, "ab") as log:
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    pid = process.pid
    spy = None
    if profile:
        # py-spy (not a project dependency: `uv pip install py-spy`) samples the worker by PID
        # until it gets SIGINT, then writes a speedscope profile.
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        spy = subprocess.Popen(
            [py_spy, "record", "--pid", str(pid), "-o", profile, "-f", "speedscope", "-r", "250"],
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "py-spy.log", "wb"),  # noqa: SIM115
        )
    window_start: tuple[float, float, int] | None = None  # (time, cpu, rows covered)
    peak_kb = 0
    try:
        while True:
            now = time.monotonic()
            reader.poll()
            peak_kb = max(peak_kb, proc_status_kb(pid, "VmHWM"))
            if reader.entries and window_start is None:
                window_start = (now, proc_cpu_seconds(pid), reader.rows)
            if _done(reader.covered, filled.last_offsets):
                break
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise SystemExit(f"{name} exited with {process.returncode}:\n{tail}")
            if now - started > timeout:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise SystemExit(
                    f"{name}: timed out after {timeout}s with {reader.rows} of "
                    f"{filled.events} rows in bronze\n{tail}"
                )
            time.sleep(0.05)
        end = time.monotonic()
        cpu_end = proc_cpu_seconds(pid)
        peak_kb = max(peak_kb, proc_status_kb(pid, "VmHWM"))
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                stop_process(spy, timeout=5)
        returncode = stop_process(process, timeout=60)
    assert window_start is not None
    t0, cpu0, rows0 = window_start
    window_rows = reader.rows - rows0
    files_on_disk = sum(1 for _ in (lake / "bronze").rglob("*.parquet"))
    parquet_bytes = sum(entry["bytes"] for entry in reader.entries)
    return Rate(
        window_rows,
        int(filled.bytes * window_rows / filled.events),
        end - t0,
        end - started,
        cpu_end - cpu0,
        extra={
            "peak_rss_mb": peak_kb / 1024,
            "files": len(reader.entries),
            "files_on_disk": files_on_disk,
            "rows_in_bronze": reader.rows,
            "parquet_mb": parquet_bytes / 1e6,
            "first_file_after_s": t0 - started,
            "returncode": returncode,
            "rotation_reasons": _count(e["rotation_reason"] for e in reader.entries),
        },
    )


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def fetch_records(bootstrap: str, filled: Filled, limit: int) -> list[Any]:
    from streams.bronze_worker import KafkaRecord

    consumer = backlog_reader(bootstrap, filled, "fetch")
    records: list[Any] = []
    try:
        while len(records) < limit:
            for msg in consumer.consume(min(10_000, limit - len(records)), 1.0):
                if msg.error() is not None:
                    raise KafkaException(msg.error())
                records.append(
                    KafkaRecord(
                        topic=msg.topic(),
                        partition=msg.partition(),
                        offset=msg.offset(),
                        key=msg.key(),
                        value=msg.value(),
                        timestamp_ms=msg.timestamp()[1],
                        token=msg.offset(),
                    )
                )
    finally:
        consumer.close()
    records.sort(key=lambda r: (r.partition, r.offset))
    return records


def writer_alone(
    records: list[Any], workdir: Path, flush_rows: int | None, profile: str | None
) -> Rate:
    """BronzeWorker.handle over pre-fetched records: decode, buffer, Parquet, manifest."""
    from binlake.settings import BronzeSettings
    from binlake.storage import LakeStorage
    from cdc.json_decoding import clear_schema_cache
    from streams.bronze_worker import BronzeWorker
    from streams.flush_policy import FlushPolicy

    defaults = BronzeSettings()
    lake = workdir / "lake-inproc"
    worker = BronzeWorker(
        LakeStorage.from_url(str(lake)),
        topic_prefix=PREFIX,
        flush_policy=FlushPolicy(
            rows=flush_rows or defaults.flush_rows,
            seconds=defaults.flush_seconds,
            bytes=defaults.flush_bytes,
        ),
    )
    clear_schema_cache()
    nbytes = sum(r.size for r in records)
    acked = 0
    profiler = cProfile.Profile() if profile else None
    gc.collect()
    cpu0, start = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    handle = worker.handle
    for record in records:
        acked += len(handle(record).tokens)
    acked += len(worker.close().tokens)
    if profiler:
        profiler.disable()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0
    if profiler:
        profiler.dump_stats(profile)
    if acked != len(records) or worker.stats.dead_letters:
        raise SystemExit(
            f"in-process writer acked {acked} of {len(records)} records, "
            f"{worker.stats.dead_letters} dead letters"
        )
    return Rate(
        len(records),
        nbytes,
        seconds,
        seconds,
        cpu,
        extra={"files": worker.stats.files},
    )


def decode_alone(records: list[Any]) -> Rate:
    from cdc.json_decoding import clear_schema_cache, decode_change

    clear_schema_cache()
    nbytes = sum(r.size for r in records)
    gc.collect()
    start = time.perf_counter()
    for r in records:
        decode_change(r.key, r.value, topic=r.topic, topic_prefix=PREFIX)
    return Rate(len(records), nbytes, time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# Extra phases: where the worker's time goes (see benchmarks/README.md)
# ---------------------------------------------------------------------------------------------

_FAUST_NULL_APP = """
import os, sys, time
import faust

app = faust.App(
    os.environ["BENCH_GROUP"],
    broker="kafka://" + os.environ["BENCH_BOOTSTRAP"],
    store="memory://",
    value_serializer="raw",
    key_serializer="raw",
    autodiscover=False,
    datadir=os.environ["BENCH_DATADIR"],
    web_enabled=False,
    broker_session_timeout=10,
    broker_heartbeat_interval=1,
    broker_commit_interval=1.0,
    broker_commit_every=1000,
    consumer_auto_offset_reset="earliest",
    stream_wait_empty=False,
    topic_partitions=1,
    topic_replication_factor=1,
)
topic = app.topic(os.environ["BENCH_TOPIC"], key_type=bytes, value_type=bytes,
                  key_serializer="raw", value_serializer="raw", allow_empty=True)
progress = os.environ["BENCH_PROGRESS"]
state = {"n": 0, "first": None}


@app.agent(topic)
async def null_agent(stream):
    # What the bronze agent does minus the bronze work: iterate events, ack each one.
    async for event in stream.noack().events():
        if state["first"] is None:
            state["first"] = time.time()
        state["n"] += 1
        event.ack()


@app.timer(0.1)
async def report():
    with open(progress + ".tmp", "w") as f:
        f.write(f"{state['n']} {state['first'] or 0} {time.time()}")
    os.replace(progress + ".tmp", progress)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()
"""


def faust_null_run(
    bootstrap: str, filled: Filled, workdir: Path, *, timeout: float, extra_env: dict[str, str]
) -> Rate:
    """Faust alone: an agent that only iterates and acks the events (binlake's app settings)."""
    script = workdir / "faust_null_app.py"
    script.write_text(_FAUST_NULL_APP)
    progress = workdir / "faust_null.progress"
    env = dict(os.environ)
    env.update(
        BENCH_GROUP=f"bench-faust-null-{uuid.uuid4().hex[:6]}",
        BENCH_BOOTSTRAP=bootstrap,
        BENCH_TOPIC=TOPIC,
        BENCH_DATADIR=str(workdir / "faust-null-data"),
        BENCH_PROGRESS=str(progress),
    )
    env.update(extra_env)
    log_path = workdir / "faust_null.log"
    with open(log_path, "ab") as log:
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, str(script)], cwd=workdir, env=env, stdout=log, stderr=log
        )
    window: tuple[float, float, int] | None = None
    count = 0
    try:
        while count < filled.events:
            time.sleep(0.05)
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise SystemExit(f"Faust null app exited with {process.returncode}:\n{tail}")
            if time.monotonic() - started > timeout:
                raise SystemExit(f"Faust null app: timed out at {count} events")
            try:
                count = int(progress.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if count and window is None:
                window = (time.monotonic(), proc_cpu_seconds(process.pid), count)
        end, cpu_end = time.monotonic(), proc_cpu_seconds(process.pid)
        peak_kb = proc_status_kb(process.pid, "VmHWM")
    finally:
        stop_process(process, timeout=30)
    assert window is not None
    t0, cpu0, n0 = window
    return Rate(
        count - n0,
        int(filled.bytes * (count - n0) / filled.events),
        end - t0,
        end - started,
        cpu_end - cpu0,
        extra={"peak_rss_mb": peak_kb / 1024},
    )


def run_confluent_writer() -> None:
    """A bronze writer without Faust (the design proposed in benchmarks/README.md).

    librdkafka fetches in its own threads; this loop takes records in batches, hands each to
    `BronzeWorker.handle`, and commits the offsets the worker released (the manifest first,
    then the commit, as in the Faust app). Run as a subprocess by `--prototype`.
    """
    from binlake.settings import load_settings
    from streams.bronze_worker import BronzeWorker, KafkaRecord

    settings = load_settings()
    worker = BronzeWorker.from_settings(settings)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": settings.bronze.app_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # librdkafka stops fetching once 64 MB wait in its queue and by default waits a
            # whole second before fetching again: with a backlog that idled the loop ~40%.
            "fetch.queue.backoff.ms": 20,
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
        }
    )
    committable: dict[tuple[str, int], int] = {}

    def commit() -> None:
        if committable:
            offsets = [TopicPartition(t, p, o) for (t, p), o in committable.items()]
            consumer.commit(offsets=offsets, asynchronous=False)
            committable.clear()

    def release(released: Any) -> None:
        for topic, partition, offset in released.tokens:
            committable[(topic, partition)] = offset + 1

    def on_assign(_consumer: Any, partitions: list[Any]) -> None:
        worker.assigned((tp.topic, tp.partition) for tp in partitions)

    def on_revoke(_consumer: Any, partitions: list[Any]) -> None:
        release(worker.revoke([(tp.topic, tp.partition) for tp in partitions]))
        commit()

    consumer.subscribe([f"^{PREFIX}\\.[^.]+\\.[^.]+$"], on_assign=on_assign, on_revoke=on_revoke)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    last_commit = time.monotonic()
    handle = worker.handle
    try:
        while not stop:
            for msg in consumer.consume(10_000, 0.1):
                if msg.error() is not None:
                    continue
                topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                released = handle(
                    KafkaRecord(
                        topic,
                        partition,
                        offset,
                        msg.key(),
                        msg.value(),
                        msg.timestamp()[1],
                        (topic, partition, offset),
                    )
                )
                if released:
                    release(released)
            release(worker.tick())
            if time.monotonic() - last_commit >= 1.0:
                commit()
                last_commit = time.monotonic()
    finally:
        release(worker.close())
        commit()
        consumer.close()


def offline_breakdown(n: int, flush_rows: int | None, repeat: int) -> dict[str, Any]:
    """Where the writer's time goes per event, without a broker (best of `repeat` runs)."""
    from binlake.bronze.parquet_format import build_table, to_parquet_bytes
    from binlake.settings import BronzeSettings
    from binlake.storage import LakeStorage
    from cdc.json_decoding import clear_schema_cache, decode_change
    from streams.bronze_worker import BronzeWorker, KafkaRecord
    from streams.flush_policy import FlushPolicy

    workload = Workload()
    records = [
        KafkaRecord(TOPIC, p, i, k, v, ts, i) for i, (p, k, v, ts) in enumerate(workload.events(n))
    ]
    rows_per_file = flush_rows or BronzeSettings().flush_rows

    def best(run: Any) -> float:
        times = []
        for _ in range(repeat):
            gc.collect()
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return min(times)

    def decode_all() -> list[Any]:
        clear_schema_cache()
        return [decode_change(r.key, r.value, topic=r.topic, topic_prefix=PREFIX) for r in records]

    events = decode_all()
    chunks = [
        list(zip(range(i, i + rows_per_file), events[i : i + rows_per_file], strict=False))
        for i in range(0, n, rows_per_file)
    ]
    schemas = [next(e.row_schema for _, e in chunk if not e.is_tombstone) for chunk in chunks]
    tables: list[Any] = []

    def build_all() -> None:
        tables.clear()
        for chunk, schema in zip(chunks, schemas, strict=True):
            tables.append(
                build_table(TOPIC, 0, chunk, schema, table="shop.orders", primary_key=["id"])
            )

    def encode_all() -> None:
        for table in tables:
            to_parquet_bytes(table)

    def handle_all() -> None:
        clear_schema_cache()
        lake = Path(tempfile.mkdtemp(prefix="binlake-bench-offline-"))
        try:
            worker = BronzeWorker(
                LakeStorage.from_url(str(lake)),
                topic_prefix=PREFIX,
                flush_policy=FlushPolicy(rows=rows_per_file, seconds=3600.0),
            )
            for record in records:
                worker.handle(record)
            worker.close()
        finally:
            shutil.rmtree(lake, ignore_errors=True)

    result = {
        "decode_us": best(decode_all) / n * 1e6,
        "build_table_us": best(build_all) / n * 1e6,
        "to_parquet_us": best(encode_all) / n * 1e6,
        "handle_us": best(handle_all) / n * 1e6,
    }
    result["handle_events_per_s"] = 1e6 / result["handle_us"]
    result["other_us"] = (
        result["handle_us"]
        - result["decode_us"]
        - result["build_table_us"]
        - result["to_parquet_us"]
    )
    return result


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="records in the backlog")
    parser.add_argument("--partitions", type=int, default=1, help="topic partitions (1)")
    parser.add_argument(
        "--compression", default="none", help="producer compression (Connect's default: none)"
    )
    parser.add_argument(
        "--flush-rows", type=int, default=None, help="BINLAKE_BRONZE__FLUSH_ROWS (default 5000)"
    )
    parser.add_argument(
        "--inproc-events",
        type=int,
        default=200_000,
        help="records held in memory for (c), the writer without Faust (default 200000)",
    )
    parser.add_argument("--timeout", type=float, default=None, help="per phase, seconds")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the worker (e.g. Faust's TOPIC_DISABLE_LEADER=true)",
    )
    parser.add_argument(
        "--skip", default="", help="comma-separated phases to skip: raw,aiokafka,worker,inproc"
    )
    parser.add_argument(
        "--extras",
        action="store_true",
        help="also run (d) Faust with a do-nothing agent and (e) the confluent-kafka prototype",
    )
    parser.add_argument(
        "--no-broker",
        action="store_true",
        help="no broker: per-event cost breakdown of decode / Parquet / the rest, in process",
    )
    parser.add_argument("--repeat", type=int, default=3, help="--no-broker: best of N runs")
    parser.add_argument("--profile-inproc", metavar="PATH", help="cProfile stats of phase (c)")
    parser.add_argument(
        "--profile-worker", metavar="PATH", help="py-spy speedscope profile of the worker (b)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    parser.add_argument("--run-confluent-writer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_confluent_writer:
        run_confluent_writer()
        return 0
    n = args.events
    if args.no_broker:
        result = offline_breakdown(n, args.flush_rows, args.repeat)
        print(
            f"per event (best of {args.repeat}, {n} records): decode {result['decode_us']:.2f} us,"
            f" build_table {result['build_table_us']:.2f} us, to_parquet "
            f"{result['to_parquet_us']:.2f} us, rest of BronzeWorker.handle "
            f"{result['other_us']:.2f} us; handle total {result['handle_us']:.2f} us = "
            f"{result['handle_events_per_s']:,.0f} events/s"
        )
        print(json.dumps({"events": n, **{k: round(v, 3) for k, v in result.items()}}))
        return 0
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    timeout = args.timeout or 120.0 + n / 1000
    extra_env = dict(item.split("=", 1) for item in args.worker_env)

    workdir = Path(tempfile.mkdtemp(prefix="binlake-bench-"))
    result: dict[str, Any] = {"events": n}
    broker_process = None
    try:
        broker, broker_process = start_kafka_broker(workdir / "kafka")
        bootstrap = broker.bootstrap_servers
        print(f"kafka pid {broker_process.pid} on {bootstrap}; work dir {workdir}", flush=True)

        filled = fill_topic(bootstrap, n, args.partitions, args.compression)
        print(
            f"filled {TOPIC} ({args.partitions} partition(s)) with {n} records, "
            f"{filled.bytes / 1e6:.1f} MB (avg {filled.bytes / n:.0f} B/record), ops "
            f"{filled.ops}, in {filled.seconds:.1f}s ({n / filled.seconds:,.0f}/s)",
            flush=True,
        )
        result["record_bytes_avg"] = round(filled.bytes / n)
        result["ops"] = filled.ops

        raw = None
        if "raw" not in skip:
            raw = raw_confluent(bootstrap, filled, timeout)
            print(f"(a) raw confluent-kafka loop: {raw.summary()}", flush=True)
            result["raw_events_per_s"] = round(raw.events_per_s)
            result["raw_mb_per_s"] = round(raw.mb_per_s, 1)
        if "aiokafka" not in skip:
            aio = raw_aiokafka(bootstrap, filled, timeout)
            print(f"(a') raw aiokafka loop (Faust's client): {aio.summary()}", flush=True)
            result["raw_aiokafka_events_per_s"] = round(aio.events_per_s)

        def report(label: str, key: str, w: Rate) -> None:
            e2e = n / w.total_seconds
            per_core = w.events / w.cpu_seconds if w.cpu_seconds else 0.0
            print(
                f"{label}: {w.events_per_s:,.0f} events/s, {w.mb_per_s:,.1f} MB/s steady "
                f"({w.events} rows in {w.seconds:.2f}s after the first file at "
                f"{w.extra['first_file_after_s']:.1f}s); end-to-end incl. start-up "
                f"{e2e:,.0f} events/s ({w.total_seconds:.1f}s); {per_core:,.0f} events per "
                f"CPU-second ({w.cpu_seconds:.1f} CPU-s); peak RSS "
                f"{w.extra['peak_rss_mb']:.0f} MB; {w.extra['files']} files "
                f"({w.extra['parquet_mb']:.1f} MB Parquet, {w.extra['rotation_reasons']}); "
                f"exit {w.extra['returncode']}",
                flush=True,
            )
            result.update(
                {
                    f"{key}_events_per_s": round(w.events_per_s),
                    f"{key}_mb_per_s": round(w.mb_per_s, 1),
                    f"{key}_end_to_end_events_per_s": round(e2e),
                    f"{key}_events_per_cpu_s": round(per_core),
                    f"{key}_peak_rss_mb": round(w.extra["peak_rss_mb"], 1),
                    f"{key}_files": w.extra["files"],
                }
            )

        if "worker" not in skip:
            w = worker_run(
                bootstrap,
                filled,
                workdir,
                timeout=timeout,
                flush_rows=args.flush_rows,
                extra_env=extra_env,
                profile=args.profile_worker,
            )
            report("(b) bronze worker (Faust)", "writer", w)
            result.update(
                peak_rss_mb=round(w.extra["peak_rss_mb"], 1),
                files=w.extra["files"],
                parquet_mb=round(w.extra["parquet_mb"], 1),
                worker_exit=w.extra["returncode"],
            )
            if raw is not None and raw.events_per_s:
                result["ratio"] = round(w.events_per_s / raw.events_per_s, 3)
                print(f"ratio (b)/(a) = {result['ratio']:.3f}", flush=True)

        if args.extras:
            f = faust_null_run(bootstrap, filled, workdir, timeout=timeout, extra_env=extra_env)
            print(
                f"(d) Faust, agent that only acks (same app settings): "
                f"{f.events_per_s:,.0f} events/s ({f.events} in {f.seconds:.2f}s, "
                f"{f.events / f.cpu_seconds if f.cpu_seconds else 0:,.0f} per CPU-second)",
                flush=True,
            )
            result["faust_null_events_per_s"] = round(f.events_per_s)
            p = worker_run(
                bootstrap,
                filled,
                workdir,
                timeout=timeout,
                flush_rows=args.flush_rows,
                extra_env={},
                profile=None,
                name="prototype",
                command=[sys.executable, str(Path(__file__).resolve()), "--run-confluent-writer"],
            )
            report("(e) prototype: confluent-kafka loop + BronzeWorker.handle", "prototype", p)
            if raw is not None and raw.events_per_s:
                result["prototype_ratio"] = round(p.events_per_s / raw.events_per_s, 3)

        if "inproc" not in skip:
            limit = min(n, args.inproc_events)
            records = fetch_records(bootstrap, filled, limit)
            d = decode_alone(records)
            print(f"    decode_change alone: {d.summary()}", flush=True)
            c = writer_alone(records, workdir, args.flush_rows, args.profile_inproc)
            files = f", {c.extra['files']} files"
            print(f"(c) BronzeWorker.handle alone (no Faust): {c.summary(files)}", flush=True)
            result.update(
                decode_events_per_s=round(d.events_per_s),
                inproc_events=c.events,
                inproc_events_per_s=round(c.events_per_s),
                inproc_mb_per_s=round(c.mb_per_s, 1),
            )
            if "writer_events_per_s" in result and c.events_per_s:
                share = 1 - result["writer_events_per_s"] / c.events_per_s
                result["faust_share_of_time"] = round(share, 3)
                print(
                    f"    Faust + aiokafka take {share:.0%} of the worker's time per event "
                    f"({1e6 / result['writer_events_per_s']:.1f} us vs "
                    f"{1e6 / c.events_per_s:.1f} us without Faust)",
                    flush=True,
                )
            del records
            if args.profile_inproc:
                stats = pstats.Stats(args.profile_inproc)
                stats.sort_stats("cumulative").print_stats(25)
    finally:
        if broker_process is not None:
            stop_process(broker_process, timeout=30)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for key in ("raw_events_per_s", "writer_events_per_s", "ratio", "peak_rss_mb"):
        result.setdefault(key, None)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

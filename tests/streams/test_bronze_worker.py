"""The Faust-free bronze worker: real Debezium JSON in, bronze files, dead letters and releases
out."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from binlake.bronze import layout
from binlake.bronze.manifest import Manifest
from binlake.errors import StorageUnavailableError
from binlake.settings import load_settings
from binlake.storage import LakeStorage
from cdc.avro import ConfluentAvroDecoder
from streams.bronze_worker import BronzeWorker, KafkaRecord
from streams.dead_letter import dead_letter_path
from streams.flush_policy import FlushPolicy

FIXTURE = Path(__file__).parents[1] / "fixtures" / "debezium_mysql_all_types.json"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lake(tmp_path: Path) -> LakeStorage:
    return LakeStorage.from_url(str(tmp_path / "lake"))


def make_worker(lake: LakeStorage, clock: FakeClock | None = None, **kwargs) -> BronzeWorker:
    flush = FlushPolicy(
        rows=kwargs.pop("flush_rows", 1000), seconds=kwargs.pop("flush_seconds", 5.0)
    )
    return BronzeWorker(
        lake,
        topic_prefix="binlake",
        clock=clock or FakeClock(),
        wall_clock=lambda: 99.0,
        flush_policy=flush,
        **kwargs,
    )


def record(
    topic: str,
    offset: int,
    kv: tuple[bytes | None, bytes | None],
    partition: int = 0,
    timestamp_ms: int | None = 1_795_255_200_500,
) -> KafkaRecord:
    key, value = kv
    return KafkaRecord(topic, partition, offset, key, value, timestamp_ms, token=offset)


def bronze_offsets(lake: LakeStorage) -> list[tuple[str, int, int]]:
    found = []
    for entry in Manifest(lake).entries():
        table = pq.read_table(lake.full_path(entry.path))
        found += [
            (t, p, o)
            for t, p, o in zip(
                table.column("_topic").to_pylist(),
                table.column("_partition").to_pylist(),
                table.column("_offset").to_pylist(),
                strict=True,
            )
        ]
    return found


def test_changes_become_bronze_rows_in_order(lake, dbz):
    orders = dbz.table()
    worker = make_worker(lake, flush_rows=4)
    released = []
    records = [
        orders.change("r", 1, snapshot="first"),
        orders.change("c", 2, price_cents=1999),
        orders.change("u", 2, qty=5),
        orders.change("d", 2),
        orders.tombstone(2),
    ]
    for offset, kv in enumerate(records):
        released += worker.handle(record(orders.topic, offset, kv)).tokens
    assert released == [0, 1, 2, 3]
    released += worker.close().tokens
    assert released == [0, 1, 2, 3, 4]

    entries = Manifest(lake).entries()
    assert [(e.first_offset, e.last_offset, e.rotation_reason) for e in entries] == [
        (0, 3, "rows"),
        (4, 4, "shutdown"),
    ]
    rows = pq.read_table(lake.full_path(entries[0].path)).to_pylist()
    assert [r["_op"] for r in rows] == ["r", "c", "u", "d"]
    assert rows[0]["_source_snapshot"] == "first"
    assert str(rows[1]["price"]) == "19.99"
    tomb = pq.read_table(lake.full_path(entries[1].path)).to_pylist()
    assert tomb[0]["_op"] == "x" and tomb[0]["id"] == 2
    assert worker.stats.rows == 5 and worker.stats.files == 2


def test_a_truncate_between_changes_is_a_bronze_row_of_the_same_file(lake, dbz):
    orders = dbz.table()
    worker = make_worker(lake)
    records = [
        orders.change("c", 1, pos=10),
        orders.change("c", 2, pos=20),
        orders.truncate(pos=30),
        orders.change("c", 3, pos=40),
    ]
    for offset, kv in enumerate(records):
        worker.handle(record(orders.topic, offset, kv))
    assert worker.close().tokens == [0, 1, 2, 3]

    [entry] = Manifest(lake).entries()  # no schema change, no new version for the truncate
    assert (entry.first_offset, entry.last_offset, entry.primary_key) == (0, 3, ["id"])
    rows = pq.read_table(lake.full_path(entry.path)).to_pylist()
    assert [r["_op"] for r in rows] == ["c", "c", "t", "c"]
    truncate = rows[2]
    assert (truncate["_source_file"], truncate["_source_pos"], truncate["_source_row"]) == (
        "mariadb-bin.000003",
        30,
        0,
    )
    assert truncate["_source_ts_ms"] == dbz.BASE_TS_MS and truncate["_captured_ts_ms"] is not None
    assert all(truncate[c] is None for c in ("id", "name", "qty", "price"))
    assert worker.stats.dead_letters == 0


def test_a_truncate_as_the_first_record_of_a_table_is_kept(lake, dbz):
    orders = dbz.table()
    worker = make_worker(lake)
    tokens = worker.handle(record(orders.topic, 0, orders.truncate(pos=30))).tokens
    tokens += worker.handle(record(orders.topic, 1, orders.change("c", 1, pos=40))).tokens
    assert tokens + worker.close().tokens == [0, 1]

    rows = [
        row
        for entry in Manifest(lake).entries()
        for row in pq.read_table(lake.full_path(entry.path)).to_pylist()
    ]
    assert [(r["_op"], r["_offset"], r["_source_pos"], r["id"]) for r in rows] == [
        ("t", 0, 30, None),
        ("c", 1, 40, 1),
    ]
    assert worker.stats.dead_letters == 0


def test_undecodable_records_are_dead_lettered_and_released_in_order(lake, dbz):
    orders = dbz.table()
    worker = make_worker(lake)
    tokens = worker.handle(record(orders.topic, 0, orders.change("c", 1))).tokens
    bad = (b'{"id": 1}', b"\x00 not json")
    tokens += worker.handle(record(orders.topic, 1, bad)).tokens
    assert tokens == []  # held behind the buffered row at offset 0
    tokens += worker.handle(record(orders.topic, 2, orders.change("c", 3))).tokens
    tokens += worker.close().tokens
    assert tokens == [0, 1, 2]

    path = dead_letter_path(orders.topic, 0, 1)
    assert path == f"bronze/_dead_letter/{orders.topic}+0+{1:020d}.json"
    letter = json.loads(lake.read_bytes(path))
    assert base64.b64decode(letter["key_b64"]) == bad[0]
    assert base64.b64decode(letter["value_b64"]) == bad[1]
    assert (letter["topic"], letter["partition"], letter["offset"]) == (orders.topic, 0, 1)
    assert "JSON" in letter["reason"] and letter["dead_lettered_at"] == 99.0
    assert letter["timestamp_ms"] == 1_795_255_200_500
    assert [o for _, _, o in bronze_offsets(lake)] == [0, 2]
    assert worker.stats.dead_letters == 1


def test_a_tombstone_for_a_null_key_is_a_dead_letter_with_null_value(lake, dbz):
    worker = make_worker(lake)
    assert worker.handle(record(dbz.table().topic, 0, (None, None))).tokens == [0]
    letter = json.loads(lake.read_bytes(dead_letter_path("binlake.shop.orders", 0, 0)))
    assert letter["key_b64"] is None and letter["value_b64"] is None


def test_schema_change_records_are_skipped(lake, dbz):
    worker = make_worker(lake)
    released = worker.handle(record("binlake", 0, (None, dbz.schema_change_value())))
    assert released.tokens == [0] and not released.files
    assert worker.stats.schema_changes == 1
    assert not lake.exists(layout.DEAD_LETTER_DIR)


def test_a_decoder_bug_dead_letters_instead_of_stopping(lake, dbz):
    def broken(*args, **kwargs):
        raise KeyError("oops")

    worker = BronzeWorker(
        lake, topic_prefix="binlake", flush_policy=FlushPolicy(rows=10, seconds=5.0), decode=broken
    )
    assert worker.handle(record("binlake.shop.orders", 0, (b"k", b"v"))).tokens == [0]
    letter = json.loads(lake.read_bytes(dead_letter_path("binlake.shop.orders", 0, 0)))
    assert "KeyError" in letter["reason"]


def test_dead_letter_storage_failure_propagates_and_can_be_retried(lake, dbz, monkeypatch):
    worker = make_worker(lake)
    calls = []

    def failing(relative, data):
        calls.append(relative)
        raise StorageUnavailableError("down")

    monkeypatch.setattr(worker.dead_letters, "storage", _Proxy(lake, write_atomic=failing))
    bad = record("binlake.shop.orders", 0, (b"x", b"y"))
    with pytest.raises(StorageUnavailableError):
        worker.handle(bad)
    monkeypatch.setattr(worker.dead_letters, "storage", lake)
    assert worker.handle(bad).tokens == [0]


class _Proxy:
    def __init__(self, target, **overrides):
        self._target = target
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(self._target, name)


def test_resume_skips_what_the_manifest_has_whatever_the_consumer_offset(lake, dbz):
    orders = dbz.table()
    records = [record(orders.topic, o, orders.change("c", o), partition=1) for o in range(6)]
    first = make_worker(lake, flush_rows=2)
    for r in records[:5]:
        first.handle(r)
    # Crash: offset 4 was buffered, never flushed. A new worker re-reads from offset 0.
    second = make_worker(lake, flush_rows=2)
    released = []
    for r in records:
        released += second.handle(r).tokens
    released += second.close().tokens
    assert released == [0, 1, 2, 3, 4, 5]
    assert second.stats.already_in_bronze == 4
    offsets = [o for _, _, o in bronze_offsets(lake)]
    assert sorted(offsets) == [0, 1, 2, 3, 4, 5]  # each exactly once


def test_revoked_partitions_are_flushed_and_reread_from_the_manifest(lake, dbz):
    orders = dbz.table()
    worker = make_worker(lake)
    worker.handle(record(orders.topic, 0, orders.change("c", 1), partition=0))
    worker.handle(record(orders.topic, 0, orders.change("c", 1), partition=1))
    released = worker.revoke([(orders.topic, 0), ("other.topic", 3)])
    assert released.tokens == [0] and released.files[0].rotation_reason == "partition_revoked"
    assert list(worker.writers) == [(orders.topic, 1)]
    worker.assigned([(orders.topic, 0)])
    # The partition comes back: its writer starts after what the manifest holds.
    assert worker.writer_for(orders.topic, 0).resume_after == 0
    assert worker.handle(record(orders.topic, 0, orders.change("c", 1))).tokens == [0]


def test_tick_rotates_old_files_and_survives_storage_errors(lake, dbz, monkeypatch):
    orders = dbz.table()
    clock = FakeClock()
    worker = make_worker(lake, clock)
    worker.handle(record(orders.topic, 0, orders.change("c", 1)))
    clock.now = 5.0
    writer = worker.writers[(orders.topic, 0)]
    monkeypatch.setattr(writer, "storage", _Proxy(lake, write_atomic=_raise_unavailable))
    assert worker.tick().tokens == []  # logged, retried on the next tick
    monkeypatch.setattr(writer, "storage", lake)
    assert worker.tick().tokens == [0]


def _raise_unavailable(*_args):
    raise StorageUnavailableError("down")


def test_every_debezium_type_round_trips_to_parquet(lake):
    fixture = json.loads(FIXTURE.read_text())
    worker = make_worker(lake)
    topic = "binlake.shop.t1"
    for item in fixture:
        key = item["key"].encode() if item["key"] is not None else None
        value = item["value"].encode() if item["value"] is not None else None
        worker.handle(KafkaRecord(topic, 0, item["offset"], key, value, item["timestamp"], None))
    worker.close()
    assert worker.stats.dead_letters == 0
    offsets = [o for _, _, o in bronze_offsets(lake)]
    assert offsets == [item["offset"] for item in fixture]
    entry = Manifest(lake).entries()[0]
    table = pq.read_table(lake.full_path(entry.path))
    assert table.column("_op").to_pylist() == ["r", "u", "d", "x"]


def test_a_partition_handed_over_resumes_after_the_other_workers_files(lake, dbz):
    orders = dbz.table()
    mine, theirs = make_worker(lake, flush_rows=1), make_worker(lake, flush_rows=1)
    mine.handle(record(orders.topic, 0, orders.change("c", 1)))  # reads the manifest once
    theirs.handle(record(orders.topic, 0, orders.change("c", 1), partition=2))
    theirs.handle(record(orders.topic, 1, orders.change("c", 2), partition=2))
    mine.assigned([(orders.topic, 2)])  # rebalance: partition 2 moves to this worker
    assert mine.writer_for(orders.topic, 2).resume_after == 1
    assert mine.handle(record(orders.topic, 1, orders.change("c", 2), partition=2)).tokens == [1]
    assert mine.stats.already_in_bronze == 1


def test_an_unexpected_failure_stops_its_partition_until_revoked(lake, dbz, monkeypatch):
    from streams.bronze_worker import PartitionFailedError

    orders = dbz.table()
    worker = make_worker(lake)
    worker.handle(record(orders.topic, 0, orders.change("c", 0)))
    writer = worker.writer_for(orders.topic, 0)
    monkeypatch.setattr(writer, "add", lambda *a, **k: (_ for _ in ()).throw(MemoryError()))
    with pytest.raises(MemoryError):
        worker.handle(record(orders.topic, 1, orders.change("c", 1)))
    monkeypatch.undo()
    # Offset 2 must not be written past the failed offset 1; other partitions carry on.
    with pytest.raises(PartitionFailedError, match="offset 1"):
        worker.handle(record(orders.topic, 2, orders.change("c", 2)))
    assert worker.handle(record(orders.topic, 0, orders.change("c", 0), partition=1)) is not None
    # What was buffered before the failure is still flushed; the partition is read again later.
    released = worker.revoke([(orders.topic, 0)])
    assert released.tokens == [0] and released.files[0].last_offset == 0
    worker.assigned([(orders.topic, 0)])
    assert worker.handle(record(orders.topic, 1, orders.change("c", 1))).tokens == []


# -- BronzeWorker with the Avro decoder (with a registry: tests/integration/test_avro_worker.py) --


def test_avro_settings_choose_the_avro_decoder_once(tmp_path):
    registry_url = "http://127.0.0.1:1/apis/ccompat/v7"  # never asked: no record is decoded
    settings = load_settings(
        storage_url=str(tmp_path / "lake"),
        kafka={"value_format": "avro", "schema_registry_url": registry_url},
    )
    worker = BronzeWorker.from_settings(settings)
    decoder = worker.decode.__self__
    assert isinstance(decoder, ConfluentAvroDecoder) and decoder.registry_url == registry_url
    json_worker = BronzeWorker.from_settings(load_settings(storage_url=str(tmp_path / "lake")))
    assert json_worker.decode.__module__ == "cdc.json_decoding"

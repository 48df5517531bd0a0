"""Avro in the bronze worker: Debezium AvroConverter-shaped records in, typed bronze rows out.

Records are encoded by confluent-kafka's own `AvroSerializer`, which registers their schemas in
a real Apicurio Registry (`binlake setup`'s, through its Confluent-compatible API) started once
per session on free ports (fixture `schema_registry`); the worker fetches them back by id.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from binlake.bronze.manifest import Manifest
from binlake.errors import RetriableError
from binlake.jvm_artifacts import ensure_jvm_artifacts
from binlake.local_stack.foreground import start_until_ready, stop_process
from binlake.local_stack.network import free_port
from binlake.local_stack.schema_registry import SchemaRegistry, find_registry_java
from binlake.settings import LocalStackSettings
from binlake.storage import LakeStorage
from cdc.avro import ConfluentAvroDecoder
from streams.bronze_worker import BronzeWorker, KafkaRecord
from streams.dead_letter import (
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_REASON,
    HEADER_TOPIC,
    dead_letter_path,
)
from streams.flush_policy import FlushPolicy
from tests.support.avro import envelope_record, key_record, logical, optional
from tests.support.processes import wait_for
from tests.support.worker import start_ready_worker

TOPIC = "binlake.shop.orders"
BASE_TS_MS = 1_795_255_200_000  # 2026-11-21 10:00:00 UTC


# -- a real schema registry: Apicurio Registry, in memory --------------------------------------


def start_schema_registry(
    home: Path,
    *,
    port: int | None = None,
    management_port: int | None = None,
    persistent: bool = False,
) -> tuple[SchemaRegistry, subprocess.Popen]:
    """Apicurio Registry under `home`, started and ready; the caller stops it by the returned
    handle. With `persistent`, the same `home` and ports start it again with its schemas."""
    local = LocalStackSettings()
    registry = SchemaRegistry(
        home=home,
        host="127.0.0.1",
        port=port or free_port(),
        management_port=management_port or free_port(),
        jar=ensure_jvm_artifacts(local.jvm_cache_dir, maven=local.maven).registry_jar,
        java=find_registry_java(local.registry_java, local.java),
        persistent=persistent,
    )
    process = start_until_ready(
        registry.prepare(), home / "registry.log", registry.is_ready, "Apicurio Registry", 120
    )
    return registry, process


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchemaRegistry]:
    """The session's registry (in memory); tests share it, each registering its own subjects."""
    registry, process = start_schema_registry(tmp_path_factory.mktemp("schema-registry"))
    try:
        yield registry
    finally:
        stop_process(process, timeout=30.0)


# -- Debezium AvroConverter-shaped schemas and records -----------------------------------------


VALUE_RECORD = {
    "type": "record",
    "name": "Value",
    "namespace": TOPIC,
    "fields": [
        {"name": "id", "type": "long"},
        optional("string", "name"),
        {"name": "qty", "type": {"type": "int", "connect.type": "int16"}},
        {
            "name": "price",
            "type": logical(
                "bytes",
                "org.apache.kafka.connect.data.Decimal",
                scale=2,
                precision=10,
                logicalType="decimal",
                **{"connect.parameters": {"scale": "2", "connect.decimal.precision": "10"}},
            ),
        },
        {"name": "created_at", "type": logical("long", "io.debezium.time.MicroTimestamp")},
        optional(logical("string", "io.debezium.time.ZonedTimestamp"), "updated_at"),
        optional(logical("int", "io.debezium.time.Date"), "ship_date"),
        optional(logical("long", "io.debezium.time.MicroTime"), "prep_time"),
        {"name": "active", "type": "boolean"},
        optional("double", "weight"),
        optional("bytes", "blob"),
    ],
    "connect.name": f"{TOPIC}.Value",
}

VALUE_SCHEMA = envelope_record(VALUE_RECORD, TOPIC, sub_millisecond_times=False)
KEY_SCHEMA = key_record(TOPIC)


def row(id_: int) -> dict[str, Any]:
    """The after-image of row `id_` as the serializer takes it (Avro-encoded values)."""
    return {
        "id": id_,
        "name": None if id_ % 5 == 0 else f"item-{id_}",
        "qty": id_ % 300 - 100,
        "price": Decimal(id_ * 101) / 100,
        "created_at": (BASE_TS_MS + id_) * 1000 + 123,  # epoch microseconds
        "updated_at": None if id_ % 4 == 0 else f"2026-11-21T10:00:{id_ % 60:02d}.5Z",
        "ship_date": None if id_ % 3 == 0 else 20_000 + id_,  # days since the epoch
        "prep_time": None if id_ % 2 == 0 else id_ * 1_000_001,  # microseconds
        "active": id_ % 2 == 0,
        "weight": id_ / 8,
        "blob": None if id_ % 6 == 0 else bytes([id_ % 256, 0, 255]),
    }


def expected_row(id_: int) -> dict[str, Any]:
    """`row(id_)` as bronze must hold it: Debezium's encodings decoded to Arrow types."""
    image = row(id_)
    return {
        **image,
        "created_at": datetime(1970, 1, 1) + timedelta(microseconds=image["created_at"]),
        "updated_at": None
        if image["updated_at"] is None
        else datetime.fromisoformat(image["updated_at"]).astimezone(UTC),
        "ship_date": None
        if image["ship_date"] is None
        else date(1970, 1, 1) + timedelta(days=image["ship_date"]),
        "prep_time": None
        if image["prep_time"] is None
        else timedelta(microseconds=image["prep_time"]),
    }


EXPECTED_TYPES = {
    "id": pa.int64(),
    "name": pa.string(),
    "qty": pa.int16(),
    "price": pa.decimal128(10, 2),
    "created_at": pa.timestamp("us"),
    "updated_at": pa.timestamp("us", tz="UTC"),
    "ship_date": pa.date32(),
    "prep_time": pa.duration("us"),
    "active": pa.bool_(),
    "weight": pa.float64(),
    "blob": pa.binary(),
}


def envelope(op: str, id_: int, *, ts_ms: int | None = None) -> dict[str, Any]:
    ts_ms = BASE_TS_MS + id_ * 1000 if ts_ms is None else ts_ms
    image = row(id_)
    return {
        "before": image if op in ("u", "d") else None,
        "after": None if op == "d" else image,
        "source": {
            "version": "3.0.7.Final",
            "connector": "mysql",
            "name": "binlake",
            "ts_ms": ts_ms,
            "snapshot": "false",
            "db": "shop",
            "sequence": None,
            "table": "orders",
            "server_id": 1,
            "gtid": None,
            "file": "mariadb-bin.000003",
            "pos": 1000 + id_,
            "row": 0,
            "thread": 7,
            "query": None,
        },
        "transaction": None,
        "op": op,
        "ts_ms": ts_ms + 15,
    }


class Encoder:
    """Keys and values encoded by confluent-kafka's AvroSerializer (registering as it goes,
    under the subjects `<topic>-key` and `<topic>-value`)."""

    def __init__(self, registry_url: str, topic: str = TOPIC) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroSerializer

        self.topic = topic
        # Without a timeout the client waits forever for an answer (once, under heavy load, a
        # registration got none); with one, a request that times out is retried.
        client = SchemaRegistryClient({"url": registry_url, "timeout": 20})
        self._key = AvroSerializer(client, json.dumps(KEY_SCHEMA))
        self._value = AvroSerializer(client, json.dumps(VALUE_SCHEMA))

    def change(self, op: str, id_: int) -> tuple[bytes, bytes]:
        from confluent_kafka.serialization import MessageField, SerializationContext

        key = self._key({"id": id_}, SerializationContext(self.topic, MessageField.KEY))
        value = self._value(envelope(op, id_), SerializationContext(self.topic, MessageField.VALUE))
        return key, value

    def tombstone(self, id_: int) -> tuple[bytes, None]:
        from confluent_kafka.serialization import MessageField, SerializationContext

        return self._key({"id": id_}, SerializationContext(self.topic, MessageField.KEY)), None


def bronze_rows(lake: LakeStorage) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for entry in Manifest(lake).entries():
        table = pq.read_table(lake.full_path(entry.path))
        for name, dtype in EXPECTED_TYPES.items():
            assert table.schema.field(name).type == dtype, (name, table.schema.field(name).type)
        rows += table.to_pylist()
    return sorted(rows, key=lambda r: (r["_partition"], r["_offset"]))


def avro_worker(
    lake: LakeStorage, topic_prefix: str, decoder: ConfluentAvroDecoder, *, flush_rows: int
) -> BronzeWorker:
    """The Faust-free worker decoding with `decoder`, closing files by row count only."""
    return BronzeWorker(
        lake,
        topic_prefix=topic_prefix,
        flush_policy=FlushPolicy(rows=flush_rows, seconds=60.0),
        decode=decoder.decode_change,
    )


# -- BronzeWorker with the Avro decoder --------------------------------------------------------


@pytest.mark.integration
def test_avro_records_become_typed_bronze_rows(tmp_path, schema_registry):
    topic = f"avro{uuid.uuid4().hex[:8]}.shop.orders"
    encoder = Encoder(schema_registry.url, topic)
    lake = LakeStorage.from_url(str(tmp_path / "lake"))
    decoder = ConfluentAvroDecoder(schema_registry.url)
    worker = avro_worker(lake, topic.split(".")[0], decoder, flush_rows=100)
    records = [encoder.change("c", i) for i in range(1, 8)]
    records += [encoder.change("u", 3), encoder.change("d", 4), encoder.tombstone(4)]
    records.append((b"k", b"\x01 not Confluent Avro"))
    for offset, (key, value) in enumerate(records):
        worker.handle(KafkaRecord(topic, 0, offset, key, value, BASE_TS_MS + 10_000, offset))
    worker.close()
    decoder.close()
    rows = bronze_rows(lake)
    assert [r["_op"] for r in rows] == ["c"] * 7 + ["u", "d", "x"]
    for r, id_ in zip(rows[:9], [1, 2, 3, 4, 5, 6, 7, 3, 4], strict=True):
        assert {k: r[k] for k in EXPECTED_TYPES} == expected_row(id_)
    assert rows[9]["id"] == 4 and rows[9]["name"] is None  # tombstone: key columns only
    assert rows[0]["_source_ts_ms"] == BASE_TS_MS + 1000 and rows[0]["_source_pos"] == 1001
    [letter] = worker.take_dead_letters()
    assert letter.offset == 10 and "magic byte" in letter.reason


@pytest.mark.integration
def test_a_schema_id_unknown_to_the_registry_is_dead_lettered(tmp_path, schema_registry):
    topic = f"avro{uuid.uuid4().hex[:8]}.shop.orders"
    key, value = Encoder(schema_registry.url, topic).change("c", 1)
    unknown_id = (2**31 - 1).to_bytes(4, "big")
    lake = LakeStorage.from_url(str(tmp_path / "lake"))
    with ConfluentAvroDecoder(schema_registry.url) as decoder:
        worker = avro_worker(lake, topic.split(".")[0], decoder, flush_rows=1)
        record = KafkaRecord(topic, 0, 0, key, value[:1] + unknown_id + value[5:], BASE_TS_MS, 0)
        worker.handle(record)
        [letter] = worker.take_dead_letters()
    assert f"schema id {2**31 - 1} is unknown to the registry" in letter.reason
    assert not worker.failed


@pytest.mark.integration
def test_an_unreachable_registry_is_waited_for_not_dead_lettered(tmp_path):
    """The registry stops after the producer registered its schemas and before the worker
    fetched them: the record waits (retriable), and decodes once the registry is back with
    its stored schemas."""
    home = tmp_path / "registry"
    home.mkdir()
    registry, process = start_schema_registry(home, persistent=True)
    try:
        encoder = Encoder(registry.url)
        key, value = encoder.change("c", 1)
    finally:
        stop_process(process, timeout=30.0)
    lake = LakeStorage.from_url(str(tmp_path / "lake"))
    decoder = ConfluentAvroDecoder(registry.url)
    worker = avro_worker(lake, "binlake", decoder, flush_rows=1)
    record = KafkaRecord(TOPIC, 0, 0, key, value, BASE_TS_MS, token=0)
    with pytest.raises(RetriableError, match="unreachable"):
        worker.handle(record)
    assert worker.stats.dead_letters == 0 and not worker.failed
    _, process = start_schema_registry(
        home, port=registry.port, management_port=registry.management_port, persistent=True
    )
    try:
        assert worker.handle(record).tokens == [0]
    finally:
        stop_process(process, timeout=30.0)
        decoder.close()
    assert [r["id"] for r in bronze_rows(lake)] == [1]


# -- integration: the real worker, the session's Kafka broker and schema registry --------------


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_the_worker_writes_avro_changes_with_their_types(
    tmp_path, kafka_broker, schema_registry, processes
):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    # Its own topic prefix and consumer group: other tests share the session's broker.
    prefix = f"avro{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.shop.orders"
    partitions = 2
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(10)
    lake_dir = tmp_path / "lake"
    lake = LakeStorage.from_url(str(lake_dir))
    log = tmp_path / "worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BINLAKE_")}
    env.update(
        BINLAKE_KAFKA__BOOTSTRAP_SERVERS=kafka_broker,
        BINLAKE_KAFKA__TOPIC_PREFIX=prefix,
        BINLAKE_KAFKA__VALUE_FORMAT="avro",
        BINLAKE_KAFKA__SCHEMA_REGISTRY_URL=schema_registry.url,
        BINLAKE_BRONZE__APP_ID=f"{prefix}-bronze",
        BINLAKE_STORAGE_URL=str(lake_dir),
        BINLAKE_STATE_DIR=str(tmp_path / "state"),
        BINLAKE_BRONZE__FLUSH_SECONDS="0.3",
    )
    worker = start_ready_worker(processes, env, log)

    encoder = Encoder(schema_registry.url, topic)
    producer = Producer({"bootstrap.servers": kafka_broker, "linger.ms": 0})
    produced: dict[tuple[int, int], tuple[str, int]] = {}  # (partition, offset) -> (op, id)

    def produce(op: str, id_: int, kv: tuple[bytes | None, bytes | None]) -> None:
        def delivered(err: Any, msg: Any) -> None:
            assert err is None, err
            produced[(msg.partition(), msg.offset())] = (op, id_)

        producer.produce(
            topic, key=kv[0], value=kv[1], partition=id_ % partitions, on_delivery=delivered
        )

    for id_ in range(1, 41):
        produce("c", id_, encoder.change("c", id_))
    for id_ in (2, 3, 9):
        produce("u", id_, encoder.change("u", id_))
    produce("d", 10, encoder.change("d", 10))
    produce("x", 10, encoder.tombstone(10))
    bad_value = b"\x01" + encoder.change("c", 99)[1][1:]  # a valid body behind a bad magic byte
    produce("bad", 7, (encoder.change("c", 7)[0], bad_value))
    assert producer.flush(30) == 0
    [bad_at] = [where for where, (op, _) in produced.items() if op == "bad"]

    def covered() -> set[tuple[int, int]]:
        return {(r["_partition"], r["_offset"]) for r in bronze_rows(lake)}

    good = {where for where, (op, _) in produced.items() if op != "bad"}
    wait_for(lambda: covered() == good, 90, "every change in bronze", log)
    letter_file = lake_dir / dead_letter_path(topic, *bad_at)
    wait_for(letter_file.exists, 30, "the dead letter", log)

    rows = bronze_rows(lake)
    assert len(rows) == len(good)  # each offset once
    for r in rows:
        op, id_ = produced[(r["_partition"], r["_offset"])]
        assert r["_op"] == op and r["_topic"] == topic
        if op == "x":
            assert r["id"] == id_ and r["price"] is None
        else:
            assert {k: r[k] for k in EXPECTED_TYPES} == expected_row(id_), (op, id_)

    letter = json.loads(letter_file.read_text())
    assert base64.b64decode(letter["value_b64"]) == bad_value and "magic byte" in letter["reason"]
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_broker,
            "group.id": f"{prefix}-dead-letter-reader",
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
        }
    )
    # Assigned, not subscribed: no group join to wait for. One partition (see
    # streams.dead_letter_topic.ensure_dead_letter_topic).
    consumer.assign([TopicPartition(f"{prefix}.dead-letter", 0, OFFSET_BEGINNING)])
    try:
        deadline = time.monotonic() + 60
        message = None
        while message is None or message.error() is not None:
            assert time.monotonic() < deadline, "no message on the dead-letter topic"
            message = consumer.poll(0.2)
    finally:
        consumer.close()
    headers = dict(message.headers())
    assert message.value() == bad_value
    assert headers[HEADER_TOPIC] == topic.encode()
    assert (int(headers[HEADER_PARTITION]), int(headers[HEADER_OFFSET])) == bad_at
    assert b"magic byte" in headers[HEADER_REASON]
    assert worker.poll() is None, "the worker must keep running"
    assert processes.stop(worker) == 0, log.read_text(errors="replace")[-4000:]

"""Bad input against a real Kafka broker: the real worker dead-letters every bad record (to the
lake and the dead-letter topic) and keeps every good one (the unit tests of each kind are in
tests/streams/test_bad_input.py)."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from binlake.storage import LakeStorage
from streams.dead_letter import (
    HEADER_NULL,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_REASON,
    HEADER_TOPIC,
    dead_letter_path,
)
from tests.support.bad_input import (
    BAD_KINDS,
    MAX_MESSAGE_BYTES,
    dead_letter_offsets,
    topic_offsets_in_bronze,
)
from tests.support.processes import wait_for
from tests.support.worker import start_worker


def worker_env(tmp_path: Path, kafka: Any, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BINLAKE_")}
    env.update(
        kafka.env(),
        BINLAKE_STORAGE_URL=str(tmp_path / "lake"),
        BINLAKE_STATE_DIR=str(tmp_path / "state"),
        BINLAKE_BRONZE__FLUSH_SECONDS="0.3",
        **extra,
    )
    return env


def read_topic(bootstrap: str, topic: str, count: int, log: Path) -> list[Any]:
    """`count` messages of `topic` from its start, then as many more as arrive in 2 s of quiet."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
        }
    )
    # Assigned, not subscribed: no group join to wait for. The dead-letter topic has one
    # partition (see streams.dead_letter_topic.ensure_dead_letter_topic).
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    messages: list[Any] = []
    try:
        deadline = time.monotonic() + 60
        while len(messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: {len(messages)} of {count} messages after 60s")
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
        quiet_until = time.monotonic() + 2.0
        while time.monotonic() < quiet_until:  # a duplicate would arrive here
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
    finally:
        consumer.close()
    return messages


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_the_worker_dead_letters_every_bad_record_and_keeps_every_good_one(
    tmp_path, kafka, dbz, processes, bronze_kit
):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    orders = kafka.table()
    partitions = 2
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})  # kept alive until the result is in
    admin.create_topics([NewTopic(orders.topic, partitions, 1)])[orders.topic].result(10)
    log = tmp_path / "worker.log"
    env = worker_env(tmp_path, kafka, BINLAKE_BRONZE__MAX_MESSAGE_BYTES=str(MAX_MESSAGE_BYTES))
    worker = processes.add(start_worker(env, log))
    wait_for(lambda: "Worker]: Ready" in log.read_text(errors="replace"), 60, "worker", log)

    # Good records with every kind of bad one (that the subscription lets in) between them.
    built = {kind: make(orders) for kind, make in BAD_KINDS.items()}
    kinds = {kind: b for kind, b in built.items() if b[0] == orders.topic}
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 0})
    produced: dict[tuple[int, int], dict[str, Any]] = {}

    def produce(partition: int, key, value, *, kind: str = "", headers=None) -> None:
        def delivered(err, msg) -> None:
            assert err is None, err
            produced[(msg.partition(), msg.offset())] = {
                "kind": kind,
                "key": key,
                "value": value,
                "headers": headers or [],
            }

        producer.produce(
            orders.topic,
            key=key,
            value=value,
            partition=partition,
            headers=headers,
            on_delivery=delivered,
        )

    id_ = 0
    for index, (kind, (_, (key, value), _)) in enumerate(sorted(kinds.items())):
        partition = index % partitions
        for _ in range(3):
            id_ += 1
            produce(partition, *orders.change("c", id_, ts_ms=dbz.BASE_TS_MS + id_))
        produce(partition, key, value, kind=kind, headers=[("trace-id", kind.encode())])
    for _ in range(5):
        id_ += 1
        produce(id_ % partitions, *orders.change("c", id_, ts_ms=dbz.BASE_TS_MS + id_))
    assert producer.flush(30) == 0
    bad = {where: p for where, p in produced.items() if p["kind"]}
    good = {where for where, p in produced.items() if not p["kind"]}
    assert len(bad) == len(kinds)
    ends = {p: 1 + max(o for q, o in produced if q == p) for p in range(partitions)}

    lake_dir = tmp_path / "lake"
    lake = LakeStorage.from_url(str(lake_dir))

    def bronze() -> Counter:
        return Counter({(p, o): n for (_, p, o), n in topic_offsets_in_bronze(lake).items()})

    def dead() -> Counter:
        return Counter({(p, o): n for (_, p, o), n in dead_letter_offsets(lake_dir).items()})

    wait_for(lambda: set(bronze()) | set(dead()) == set(produced), 90, "every offset", log)
    wait_for(
        lambda: bronze_kit.committed_offsets(admin, orders.topic, partitions, kafka.group) == ends,
        60,
        "commits",
        log,
    )
    assert worker.poll() is None, "the worker must keep running"

    # Per offset: consumed = written to bronze + dead-lettered, each exactly once in one of them.
    in_bronze, in_dead = bronze(), dead()
    assert set(in_bronze) == good and set(in_dead) == set(bad)
    assert all(n == 1 for n in in_bronze.values()) and all(n == 1 for n in in_dead.values())

    # The dead-letter topic holds one message per bad record: original bytes, where and why.
    messages = read_topic(kafka.bootstrap, kafka.dead_letter_topic, len(bad), log)
    assert len(messages) == len(bad)
    by_offset = {}
    for message in messages:
        headers = dict(message.headers())
        where = (int(headers[HEADER_PARTITION]), int(headers[HEADER_OFFSET]))
        assert headers[HEADER_TOPIC] == orders.topic.encode()
        by_offset[where] = (message.key(), message.value(), headers)
    assert set(by_offset) == set(bad)
    for where, sent in bad.items():
        key, value, headers = by_offset[where]
        if sent["value"] is None:
            assert b"value" in headers[HEADER_NULL]
            if sent["key"] is None:  # sent as b"" (a client needs a key or a value)
                assert value == b""
                value = None
        assert (key, value) == (sent["key"], sent["value"]), sent["kind"]
        assert headers["trace-id"] == sent["kind"].encode()
        expected_reason = kinds[sent["kind"]][2]
        assert expected_reason in headers[HEADER_REASON].decode(), (sent["kind"], headers)
        letter = json.loads((lake_dir / dead_letter_path(orders.topic, *where)).read_text())
        assert expected_reason in letter["reason"]

    assert processes.stop(worker) == 0, log.read_text(errors="replace")[-4000:]

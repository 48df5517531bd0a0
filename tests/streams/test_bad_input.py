"""Bad input: every kind of bad record is dead-lettered (lake + topic), nothing is lost.

Unit tests drive `BronzeWorker` with each kind mixed between good records and check, per offset,
that it went to bronze or to the dead letters, never both, never neither. The Faust runtime is
driven through `agent.test_context()` to check that a dead letter is acked only once it is on the
dead-letter topic. The real worker against a real Kafka broker:
tests/integration/test_bad_input_worker.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections import Counter
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from binlake.bronze import layout
from binlake.bronze.manifest import Manifest
from binlake.storage import LakeStorage
from streams.app import BronzeApp
from streams.bronze_worker import BronzeWorker, KafkaRecord
from streams.dead_letter import (
    HEADER_NULL,
    HEADER_OFFSET,
    HEADER_OMITTED,
    HEADER_PARTITION,
    HEADER_PATH,
    HEADER_REASON,
    HEADER_TOPIC,
    DeadLetter,
    DeadLetterPublisher,
    dead_letter_path,
)
from streams.flush_policy import FlushPolicy
from streams.value_checks import compile_row_check, value_check
from tests.support.agent import FakeClock, in_memory_app, run, until
from tests.support.bad_input import (
    BAD_KINDS,
    MAX_MESSAGE_BYTES,
    dead_letter_offsets,
    topic_offsets_in_bronze,
)

REPO = Path(__file__).resolve().parents[2]
TS_MS = 1_795_255_200_500


# -- helpers -----------------------------------------------------------------------------------


def make_worker(lake: LakeStorage, **kwargs: Any) -> BronzeWorker:
    flush = FlushPolicy(
        rows=kwargs.pop("flush_rows", 1000), seconds=kwargs.pop("flush_seconds", 5.0)
    )
    options = {"max_message_bytes": MAX_MESSAGE_BYTES}
    return BronzeWorker(
        lake,
        topic_prefix="binlake",
        flush_policy=flush,
        clock=lambda: 0.0,
        wall_clock=lambda: 99.0,
        **{**options, **kwargs},
    )


# -- BronzeWorker: each kind ------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_each_kind_of_bad_record_is_dead_lettered_between_good_ones(kind, tmp_path, dbz):
    orders = dbz.table()
    topic, (key, value), reason = BAD_KINDS[kind](orders)
    lake_dir = tmp_path / "lake"
    lake = LakeStorage.from_url(str(lake_dir))
    worker = make_worker(lake)
    headers = (("trace-id", b"t-1"),)
    records = [
        KafkaRecord(orders.topic, 0, 0, *orders.change("c", 10), TS_MS, token=0),
        KafkaRecord(topic, 0, 1, key, value, TS_MS, token=1, headers=headers),
        KafkaRecord(orders.topic, 0, 2, *orders.change("c", 12, qty=3), TS_MS, token=2),
    ]
    tokens = []
    for record in records:
        tokens += worker.handle(record).tokens  # never raises: the worker keeps going
    tokens += worker.close().tokens
    assert sorted(tokens) == [0, 1, 2]  # every record released exactly once

    # Per offset: in bronze or dead-lettered, exactly once, never both.
    assert topic_offsets_in_bronze(lake) == Counter(
        {(orders.topic, 0, 0): 1, (orders.topic, 0, 2): 1}
    )
    assert dead_letter_offsets(lake_dir) == Counter({(topic, 0, 1): 1})
    assert worker.stats.dead_letters == 1 and not worker.failed

    # The lake copy: original bytes, headers, where from and why.
    path = dead_letter_path(topic, 0, 1)
    full = (lake_dir / path).resolve()
    assert full.parent == (lake_dir / layout.DEAD_LETTER_DIR).resolve()
    letter = json.loads(full.read_text())
    assert letter["key_b64"] == (None if key is None else base64.b64encode(key).decode())
    assert letter["value_b64"] == (None if value is None else base64.b64encode(value).decode())
    assert letter["headers"] == [["trace-id", base64.b64encode(b"t-1").decode()]]
    assert (letter["topic"], letter["partition"], letter["offset"]) == (topic, 0, 1)
    assert reason in letter["reason"], letter["reason"]
    # Nothing was written anywhere but bronze (no path escaped it).
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to((lake_dir / "bronze").resolve()) for p in written)

    # The copy for the dead-letter topic, handed to the caller to publish before acking.
    [pending] = worker.take_dead_letters()
    assert (pending.topic, pending.partition, pending.offset, pending.token) == (topic, 0, 1, 1)
    assert (pending.key, pending.value, pending.path) == (key, value, path)
    assert reason in pending.reason
    sent = dict(pending.kafka_headers())
    assert sent["trace-id"] == b"t-1"
    assert sent[HEADER_TOPIC] == topic.encode() and sent[HEADER_OFFSET] == b"1"
    assert sent[HEADER_PARTITION] == b"0" and reason.encode() in sent[HEADER_REASON]
    assert worker.take_dead_letters() == []


def test_a_type_mismatch_does_not_poison_the_file_of_its_neighbours(tmp_path, dbz):
    """Without the worker's check the decoder lets "abc" through for an int32 column and the
    whole file fails at flush time, again after every restart."""
    orders = dbz.table()
    lake = LakeStorage.from_url(str(tmp_path / "lake"))
    worker = make_worker(lake, flush_rows=3)
    tokens = []
    for offset, kv in enumerate(
        [orders.change("c", 1), orders.change("u", 1, qty="abc"), orders.change("u", 1, qty=4)]
    ):
        tokens += worker.handle(
            KafkaRecord(orders.topic, 0, offset, *kv, TS_MS, token=offset)
        ).tokens
    tokens += worker.handle(
        KafkaRecord(orders.topic, 0, 3, *orders.change("d", 1), TS_MS, 3)
    ).tokens
    assert tokens == [0, 1, 2, 3]  # the file rotated after 3 rows: offsets 0, 2, 3
    [entry] = Manifest(lake).entries()
    rows = pq.read_table(lake.full_path(entry.path)).to_pylist()
    assert [(r["_offset"], r["qty"]) for r in rows] == [(0, 1), (2, 4), (3, 1)]


def test_the_size_limit_is_checked_before_decoding(tmp_path):
    decoded = []

    def decoder(*args: Any, **kwargs: Any) -> Any:
        decoded.append(args)
        raise AssertionError("an oversized record must not be decoded")

    lake = LakeStorage.from_url(str(tmp_path / "lake"))
    worker = make_worker(lake, decode=decoder, max_message_bytes=10)
    record = KafkaRecord("binlake.shop.orders", 0, 0, b"k" * 5, b"v" * 6, TS_MS, token=0)
    assert worker.handle(record).tokens == [0]
    assert decoded == [] and "11 bytes" in worker.take_dead_letters()[0].reason


def test_a_refused_topic_is_refused_before_decoding(tmp_path, dbz):
    def decoder(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a record of a refused topic must not be decoded")

    lake = LakeStorage.from_url(str(tmp_path / "lake"))
    worker = make_worker(lake, decode=decoder)
    for offset, topic in enumerate(["binlake.a..b", "binlake.shop.t/x"]):
        worker.handle(KafkaRecord(topic, 0, offset, b"k", b"v", TS_MS, token=offset))
    assert worker.stats.dead_letters == 2


def test_the_schema_change_topic_is_still_skipped(tmp_path, dbz):
    lake = LakeStorage.from_url(str(tmp_path / "lake"))
    worker = make_worker(lake)
    record = KafkaRecord("binlake", 0, 0, None, dbz.schema_change_value(), TS_MS, token=0)
    assert worker.handle(record).tokens == [0]
    assert worker.stats.schema_changes == 1 and worker.stats.dead_letters == 0


# -- value checks ------------------------------------------------------------------------------

_SAMPLES = [
    1,
    -1,
    0,
    2**7,
    2**15,
    2**31,
    2**40,
    2**63,
    -(2**63) - 1,
    True,
    False,
    1.0,
    1.5,
    float("nan"),
    "1",
    "abc",
    "\ud800",
    "é",
    b"x",
    Decimal("1.23"),
    Decimal("1.234"),
    Decimal("1.230"),
    Decimal("123456789.12"),
    Decimal("12345678.9"),
    Decimal("NaN"),
    Decimal("-0.01"),
    date(2026, 1, 2),
    datetime(2026, 1, 2, 3, 4, 5),
    datetime(3000, 1, 1),
    timedelta(hours=-5),
    timedelta(days=999_999_999),
    None.__class__,
    [1],
    {"a": 1},
]
_TYPES = [
    pa.int8(),
    pa.int16(),
    pa.int32(),
    pa.int64(),
    pa.float32(),
    pa.float64(),
    pa.bool_(),
    pa.string(),
    pa.binary(),
    pa.decimal128(10, 2),
    pa.decimal256(50, 2),
    pa.date32(),
    pa.timestamp("ms"),
    pa.timestamp("us"),
    pa.timestamp("ns"),
    pa.timestamp("us", tz="UTC"),
    pa.duration("us"),
]


@pytest.mark.parametrize("dtype", _TYPES, ids=str)
def test_a_value_the_check_accepts_converts_to_arrow(dtype):
    check = value_check(dtype)
    assert check is not None
    for value in _SAMPLES:
        try:
            pa.array([value], dtype)
            arrow_ok = True
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            arrow_ok = False
        if check(value):
            assert arrow_ok, f"{value!r} passes the check for {dtype} but Arrow refuses it"


@pytest.mark.parametrize("dtype", _TYPES, ids=str)
def test_the_compiled_row_check_agrees_with_the_value_check(dtype):
    check = value_check(dtype)
    row_check = compile_row_check(pa.schema([("a", pa.int64()), ("c'ol\"", dtype)]))
    for value in [*_SAMPLES, None]:
        expected = None if value is None or check(value) else "c'ol\""
        assert row_check({"a": 1, "c'ol\"": value}) == expected, value
    assert row_check({"a": "x", "c'ol\"": None}) == "a"


# -- dead-letter path and publisher ------------------------------------------------------------


def test_any_topic_gets_a_dead_letter_path_inside_the_dead_letter_directory():
    assert dead_letter_path("binlake.shop.orders", 2, 7) == (
        f"bronze/_dead_letter/binlake.shop.orders+2+{7:020d}.json"
    )
    for topic in ("..", ".", "../../etc", "/etc/passwd", "a/b", "a\\b", "x\x00y", "é"):
        path = dead_letter_path(topic, 0, 1)
        directory, name = path.rsplit("/", 1)
        assert directory == layout.DEAD_LETTER_DIR, topic
        assert name.endswith(f"+0+{1:020d}.json") and name not in (".", "..")
    assert dead_letter_path("a/b", 0, 0) != dead_letter_path("a_b", 0, 0)
    with pytest.raises(ValueError, match="topic"):
        dead_letter_path("", 0, 0)


def _letter(**overrides: Any) -> DeadLetter:
    fields = {
        "topic": "binlake.shop.orders",
        "partition": 1,
        "offset": 5,
        "key": b"k",
        "value": b"v",
        "reason": "not valid JSON",
        "error": "DecodeError",
        "timestamp_ms": TS_MS,
        "headers": (("trace-id", b"t"),),
        "path": "bronze/_dead_letter/x.json",
    }
    return DeadLetter(**{**fields, **overrides})


class MessageSizeTooLargeError(Exception):
    """Named like aiokafka's, which the publisher recognises by name."""


def test_the_publisher_sends_the_original_bytes_with_where_and_why():
    sent: list[tuple[Any, ...]] = []
    created: list[str] = []

    async def send(topic, key, value, headers):
        sent.append((topic, key, value, dict(headers)))

    async def ensure() -> None:
        created.append("dl")

    publisher = DeadLetterPublisher("binlake.dead-letter", send, ensure_topic=ensure)
    asyncio.run(publisher.publish(_letter()))
    asyncio.run(publisher.publish(_letter(offset=6)))
    assert created == ["dl"]  # the topic is ensured once
    topic, key, value, headers = sent[0]
    assert (topic, key, value) == ("binlake.dead-letter", b"k", b"v")
    assert headers[HEADER_TOPIC] == b"binlake.shop.orders" and headers[HEADER_PARTITION] == b"1"
    assert headers[HEADER_OFFSET] == b"5" and headers[HEADER_REASON] == b"not valid JSON"
    assert headers[HEADER_PATH] == b"bronze/_dead_letter/x.json"
    assert headers["trace-id"] == b"t"
    assert publisher.published == 2


def test_a_letter_too_large_for_the_topic_is_published_without_its_bytes():
    sent: list[tuple[Any, ...]] = []

    async def send(topic, key, value, headers):
        if value:
            try:
                raise MessageSizeTooLargeError("too big")
            except MessageSizeTooLargeError as exc:
                raise RuntimeError("send failed") from exc  # wrapped, as Faust does
        sent.append((key, value, dict(headers)))

    asyncio.run(DeadLetterPublisher("dl", send).publish(_letter(value=b"v" * 100)))
    [(key, value, headers)] = sent
    assert key is None and value == b""
    assert b"101 bytes" in headers[HEADER_OMITTED] and b"x.json" in headers[HEADER_OMITTED]


def test_a_record_with_neither_key_nor_value_is_published_with_an_empty_value():
    sent: list[tuple[Any, ...]] = []

    async def send(topic, key, value, headers):
        sent.append((key, value, dict(headers)))

    asyncio.run(DeadLetterPublisher("dl", send).publish(_letter(key=None, value=None)))
    [(key, value, headers)] = sent
    assert (key, value, headers[HEADER_NULL]) == (None, b"", b"key,value")


def test_other_publish_errors_propagate_for_the_caller_to_retry():
    async def send(topic, key, value, headers):
        raise ConnectionError("broker away")

    with pytest.raises(ConnectionError):
        asyncio.run(DeadLetterPublisher("dl", send).publish(_letter()))


# -- the Faust runtime: publish before ack -----------------------------------------------------


class GatedSend:
    """A dead-letter `send` that fails `failures` times, then waits for `gate` before succeeding."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.attempts = 0
        self.gate: asyncio.Event | None = None
        self.sent: list[tuple[str, bytes | None, bytes | None, dict[str, bytes]]] = []

    async def __call__(self, topic, key, value, headers):
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("dead-letter broker away")
        if self.gate is not None:
            await self.gate.wait()
        self.sent.append((topic, key, value, dict(headers)))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(tmp_path: Path, clock: FakeClock, dbz) -> BronzeApp:
    return in_memory_app(tmp_path, clock, dbz.table().topic, flush_rows=3)


def test_a_dead_letter_is_acked_only_once_it_is_on_the_topic(app, clock, dbz, tmp_path):
    orders = dbz.table()
    send = GatedSend()
    app.bronze.enable_dead_letter_topic(DeadLetterPublisher("binlake.dead-letter", send))
    events: list[Any] = []

    async def scenario(agent: Any) -> None:
        send.gate = asyncio.Event()
        key, value = orders.change("c", 1)
        events.append(await agent.put(value, key=key, partition=0))
        events.append(
            await agent.put(b"not json", key=b"k", partition=0, headers=[("h", b"1")], wait=False)
        )
        lake_copy = tmp_path / "lake" / dead_letter_path(orders.topic, 0, 1)
        await until(lake_copy.exists)
        # The age rotation flushes offset 0 and releases offset 1 behind it: 0 is acked, the
        # dead letter waits for its publication.
        clock.now += 60.0
        await app.bronze.on_tick()
        assert events[0].message.acked and not events[1].message.acked
        send.gate.set()
        await until(lambda: events[1].message.acked)

    run(app, scenario)
    [(topic, key, value, headers)] = send.sent
    assert (topic, key, value) == ("binlake.dead-letter", b"k", b"not json")
    assert headers["h"] == b"1" and headers[HEADER_OFFSET] == b"1"


def test_publishing_is_retried_and_the_outage_logged_once(app, dbz, monkeypatch, caplog):
    monkeypatch.setattr("streams.app.RETRY_MIN_SECONDS", 0.001)
    monkeypatch.setattr("streams.app.RETRY_MAX_SECONDS", 0.002)
    send = GatedSend(failures=20)
    app.bronze.enable_dead_letter_topic(DeadLetterPublisher("binlake.dead-letter", send))
    events: list[Any] = []

    async def scenario(agent: Any) -> None:
        events.append(await agent.put(b"bad 1", key=b"k", partition=0, wait=False))
        events.append(await agent.put(b"bad 2", key=b"k", partition=0, wait=False))
        await until(lambda: all(e.message.acked for e in events))

    with caplog.at_level(logging.INFO, logger="streams"):
        run(app, scenario)
    assert send.attempts == 22 and len(send.sent) == 2
    outage = [r for r in caplog.records if "dead-letter topic" in r.getMessage()]
    assert [r.levelname for r in outage if "unavailable" in r.getMessage()] == ["ERROR"]
    assert any("available again" in r.getMessage() for r in outage)


def test_a_dead_letter_revoked_while_publishing_is_not_acked(app, dbz, monkeypatch):
    from faust.types import TP

    monkeypatch.setattr("streams.app.RETRY_MIN_SECONDS", 0.005)
    orders = dbz.table()
    send = GatedSend(failures=10**6)
    app.bronze.enable_dead_letter_topic(DeadLetterPublisher("binlake.dead-letter", send))

    async def scenario(agent: Any) -> None:
        bad = await agent.put(b"bad", key=b"k", partition=0, wait=False)
        await until(lambda: send.attempts > 0)
        await app.bronze.on_partitions_revoked(app, {TP(orders.topic, 0)})
        key, value = orders.change("c", 1)
        good = await agent.put(value, key=key, partition=1)
        await app.bronze.on_before_shutdown(app)
        assert good.message.acked and not bad.message.acked

    run(app, scenario)
    assert not app.bronze.dead_letter_acks.unpublished and not app.bronze.dead_letter_acks.held

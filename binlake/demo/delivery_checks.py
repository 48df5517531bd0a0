"""What a Kafka reader of a CDC topic gets: each record's source position, to count re-sent changes.

A change Debezium sends again after a crash is a new Kafka record (a new offset) holding the same
change: the same binlog file, position and row. Reading the topic as a `read_committed` reader
(the bronze worker) and as a `read_uncommitted` one shows what exactly-once source delivery
(KIP-618) hides: the records of transactions a killed Connect worker never committed.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Literal

import polars as pl
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from binlake.bronze.layout import (
    OFFSET,
    OP,
    PARTITION,
    SOURCE_FILE,
    SOURCE_POS,
    SOURCE_POSITION,
    SOURCE_ROW,
)

Isolation = Literal["read_committed", "read_uncommitted"]
KEY = "_key"
_TOPIC_SCHEMA = {
    PARTITION: pl.Int64,
    OFFSET: pl.Int64,
    OP: pl.String,
    SOURCE_FILE: pl.String,
    SOURCE_POS: pl.Int64,
    SOURCE_ROW: pl.Int64,
    KEY: pl.String,
}


def read_topic(
    bootstrap_servers: str, topic: str, isolation: Isolation, *, idle_s: float = 5.0
) -> pl.DataFrame:
    """Every record of `topic` a reader at `isolation` gets, from the start to the end the broker
    reports when the read begins: partition, offset, op ("x" for a tombstone), binlog position
    and the key (JSON). No consumer group is joined or committed."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"binlake-delivery-check-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        rows: list[dict] = []
        done = {p for p, end in ends.items() if end == 0}
        last_message = time.monotonic()
        while len(done) < len(ends):
            message = consumer.poll(1.0)
            if message is None:
                # A read_committed reader never gets an aborted record or a commit marker, so
                # it may stop short of the end offset; the end of the log is then a quiet spell.
                positions = consumer.position([TopicPartition(topic, p) for p in ends])
                done |= {tp.partition for tp in positions if tp.offset >= ends[tp.partition]}
                if time.monotonic() - last_message > idle_s:
                    break
                continue
            if message.error():
                raise KafkaException(message.error())
            last_message = time.monotonic()
            if message.offset() >= ends[message.partition()]:
                done.add(message.partition())
                continue
            rows.append(_record_row(message.partition(), message.offset(), message))
            if message.offset() + 1 >= ends[message.partition()]:
                done.add(message.partition())
        return pl.DataFrame(rows, schema=_TOPIC_SCHEMA, orient="row")
    finally:
        consumer.close()


def _record_row(partition: int, offset: int, message) -> dict:
    key = message.key()
    value = message.value()
    row = {PARTITION: partition, OFFSET: offset, KEY: None, OP: "x"}
    if key is not None:
        row[KEY] = json.dumps(json.loads(key).get("payload"), sort_keys=True)
    source: dict = {}
    if value is not None:
        payload = json.loads(value).get("payload") or {}
        row[OP] = payload.get("op")
        source = payload.get("source") or {}
    row[SOURCE_FILE] = source.get("file")
    row[SOURCE_POS] = source.get("pos")
    row[SOURCE_ROW] = source.get("row")
    return row


@dataclass(frozen=True)
class Copies:
    """How often a reader got each row change (records with a binlog position; tombstones
    apart)."""

    records: int  # row-change records read
    changes: int  # distinct changes among them
    resent: int  # records - changes: copies beyond the first of a change
    tombstones: int

    def describe(self) -> str:
        return (
            f"{self.records} change records, {self.changes} distinct changes, "
            f"{self.resent} re-sent, {self.tombstones} tombstones"
        )


def copies(records: pl.DataFrame, key: list[str] | None = None) -> Copies:
    """Count re-sent changes among `records`: read_topic's frame (key `_key`), or bronze rows
    with the table's key columns as `key`. One change is one binlog file, position and row, and
    one key (the rows of a snapshot share a position)."""
    identity = [*SOURCE_POSITION, *(key or [KEY])]
    changes = records.filter(pl.col(SOURCE_FILE).is_not_null())
    distinct = changes.select(identity).unique().height
    return Copies(
        records=changes.height,
        changes=distinct,
        resent=changes.height - distinct,
        tombstones=records.height - changes.height,
    )

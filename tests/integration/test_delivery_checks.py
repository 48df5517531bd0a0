"""binlake.demo.delivery_checks against the session's real Kafka broker: a read_committed reader
skips an aborted transaction's records, a read_uncommitted one gets them, and `copies` counts the
change records that repeat a binlog position."""

from __future__ import annotations

import json
import uuid

import polars as pl
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from binlake.bronze.layout import OP, SOURCE_FILE, SOURCE_POS, SOURCE_ROW
from binlake.demo.delivery_checks import Copies, copies, read_topic

pytestmark = pytest.mark.integration


def _change(key: int, pos: int, op: str = "c") -> tuple[bytes, bytes]:
    source = {"file": "mariadb-bin.000001", "pos": pos, "row": 0}
    value = {"schema": {}, "payload": {"op": op, "source": source, "after": {"id": key}}}
    return json.dumps({"schema": {}, "payload": {"id": key}}).encode(), json.dumps(value).encode()


def test_read_committed_skips_an_aborted_transaction_that_read_uncommitted_gets(
    kafka_broker: str,
) -> None:
    topic = f"delivery-check-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    producer = Producer(
        {"bootstrap.servers": kafka_broker, "transactional.id": f"{topic}-producer"}
    )
    producer.init_transactions(30)

    def transaction(records: list[tuple[bytes, bytes | None]], *, commit: bool) -> None:
        producer.begin_transaction()
        for key, value in records:
            producer.produce(topic, key=key, value=value)
        producer.flush(30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)

    transaction([_change(1, 100), _change(2, 200)], commit=True)
    transaction([_change(2, 200), _change(3, 300)], commit=False)  # a crashed worker's batch
    tombstone = (_change(2, 0)[0], None)
    transaction([_change(2, 200), _change(3, 300), _change(2, 400, "d"), tombstone], commit=True)

    committed = read_topic(kafka_broker, topic, "read_committed")
    uncommitted = read_topic(kafka_broker, topic, "read_uncommitted")

    assert copies(committed) == Copies(records=5, changes=4, resent=1, tombstones=1)
    assert copies(uncommitted) == Copies(records=7, changes=4, resent=3, tombstones=1)
    # Offsets have gaps: the aborted records and each commit or abort marker take one.
    assert committed["_offset"].to_list() == [0, 1, 6, 7, 8, 9]
    assert committed[OP].to_list() == ["c", "c", "c", "c", "d", "x"]
    assert committed[SOURCE_POS].to_list() == [100, 200, 200, 300, 400, None]


def test_copies_of_bronze_rows_count_by_position_and_key() -> None:
    bronze = pl.DataFrame(
        {
            SOURCE_FILE: ["f.1", "f.1", "f.1", "f.1", None],
            SOURCE_POS: [4, 4, 4, 9, None],
            SOURCE_ROW: [0, 0, 0, 1, None],
            # a snapshot's rows share one position; the key tells them apart
            "id": [1, 2, 2, 3, 3],
            OP: ["r", "r", "r", "d", "x"],
        }
    )
    assert copies(bronze, ["id"]) == Copies(records=4, changes=3, resent=1, tombstones=1)

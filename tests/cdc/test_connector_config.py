"""The Debezium connector config built from Settings."""

from __future__ import annotations

import os
import re

import pytest

from binlake.settings import Settings, load_settings
from cdc.connector_config import (
    MASK,
    build_connector_config,
    is_secret_key,
    redacted,
    schema_history_topic,
    secret_values,
)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("BINLAKE_"):
            monkeypatch.delenv(name)
    return load_settings(
        mysql={
            "host": "db.internal",
            "port": 3307,
            "user": "cdc",
            "password": "s3cret-pw",
            "databases": ["shop", "billing"],
        },
        kafka={"bootstrap_servers": "k1:9092,k2:9092", "topic_prefix": "lake"},
        connect={"database_server_id": 6001, "poll_interval_ms": 50},
        tables=["shop.orders", "shop.order_items", "billing.invoices"],
    )


def test_the_connector_class_follows_the_source_flavor(settings: Settings):
    mariadb = settings.model_copy(
        update={"mysql": settings.mysql.model_copy(update={"flavor": "mariadb"})}
    )
    assert build_connector_config(mariadb)["connector.class"] == (
        "io.debezium.connector.mariadb.MariaDbConnector"
    )
    assert build_connector_config(mariadb).keys() == build_connector_config(settings).keys()


def test_without_exactly_once_the_connector_does_not_require_it(settings: Settings):
    at_least_once = settings.model_copy(
        update={"connect": settings.connect.model_copy(update={"exactly_once": False})}
    )
    assert "exactly.once.support" not in build_connector_config(at_least_once)
    assert build_connector_config(settings)["exactly.once.support"] == "required"


def test_every_required_key(settings: Settings):
    config = build_connector_config(settings)

    assert config == {
        "connector.class": "io.debezium.connector.mysql.MySqlConnector",
        "tasks.max": "1",
        "database.hostname": "db.internal",
        "database.port": "3307",
        "database.user": "cdc",
        "database.password": "s3cret-pw",
        "database.server.id": "6001",
        "topic.prefix": "lake",
        "database.include.list": "shop,billing",
        "table.include.list": r"shop\.orders,shop\.order_items,billing\.invoices",
        "schema.history.internal.kafka.topic": "lake.schema-history",
        "schema.history.internal.kafka.bootstrap.servers": "k1:9092,k2:9092",
        "signal.enabled.channels": "source",
        "signal.data.collection": "shop.binlake_signal",
        "incremental.snapshot.chunk.size": "1024",
        "incremental.snapshot.watermarking.strategy": "insert_delete",
        "notification.enabled.channels": "sink",
        "notification.sink.topic.name": "lake.notifications",
        "heartbeat.interval.ms": "2000",
        "decimal.handling.mode": "precise",
        "bigint.unsigned.handling.mode": "precise",
        "time.precision.mode": "adaptive_time_microseconds",
        "snapshot.mode": "initial",
        "exactly.once.support": "required",
        "poll.interval.ms": "50",
        "topic.creation.default.replication.factor": "1",
        "topic.creation.default.partitions": "1",
        "include.schema.changes": "true",
        "tombstones.on.delete": "true",
        "skipped.operations": "none",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "true",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "true",
        "key.converter.replace.null.with.default": "false",
        "value.converter.replace.null.with.default": "false",
        # kafka.max_record_bytes (32 MiB) plus 64 KiB of framing on every hop
        "producer.override.max.request.size": "33619968",
        "producer.override.buffer.memory": "67239936",
        "topic.creation.default.max.message.bytes": "33619968",
    }


def test_all_values_are_strings(settings: Settings):
    assert all(isinstance(value, str) for value in build_connector_config(settings).values())


def test_table_include_list_matches_exactly_the_configured_tables(settings: Settings):
    patterns = build_connector_config(settings)["table.include.list"].split(",")

    def captured(table: str) -> bool:
        return any(re.fullmatch(pattern, table) for pattern in patterns)

    assert captured("shop.orders")
    assert captured("billing.invoices")
    assert not captured("shopXorders")
    assert not captured("shop.orders_archive")
    assert not captured("shop.customers")


def test_defaults_build(monkeypatch: pytest.MonkeyPatch):
    for name in list(os.environ):
        if name.startswith("BINLAKE_"):
            monkeypatch.delenv(name)
    config = build_connector_config(load_settings())

    assert config["topic.prefix"] == "binlake"
    assert config["schema.history.internal.kafka.topic"] == schema_history_topic("binlake")
    assert config["database.include.list"] == "shop"


def test_redacted_masks_credentials_only(settings: Settings):
    config = build_connector_config(settings)
    config["schema.history.internal.producer.sasl.jaas.config"] = "... password=x;"
    config["database.ssl.keystore.password"] = "ks"
    safe = redacted(config)

    assert safe["database.password"] == MASK
    assert safe["database.ssl.keystore.password"] == MASK
    assert safe["schema.history.internal.producer.sasl.jaas.config"] == MASK
    assert safe["database.user"] == "cdc"
    assert safe["key.converter"] == config["key.converter"]
    assert "s3cret-pw" not in repr(safe)
    assert config["database.password"] == "s3cret-pw"  # the original is untouched


def test_secret_helpers(settings: Settings):
    config = build_connector_config(settings)

    assert is_secret_key("database.password")
    assert not is_secret_key("key.converter.schemas.enable")
    assert secret_values(config) == ["s3cret-pw"]
    assert secret_values({"database.password": ""}) == []


def test_large_records_raise_every_producer_and_topic_limit(settings: Settings):
    wide = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"max_record_bytes": 64 * 1024**2})}
    )
    config = build_connector_config(wide)
    limit = 64 * 1024**2 + 64 * 1024
    assert config["producer.override.max.request.size"] == str(limit)
    assert config["topic.creation.default.max.message.bytes"] == str(limit)
    # a record must also fit the producer's buffer
    assert int(config["producer.override.buffer.memory"]) >= limit


def test_column_escapes_for_a_column_too_large_to_carry(monkeypatch: pytest.MonkeyPatch):
    for name in list(os.environ):
        if name.startswith("BINLAKE_"):
            monkeypatch.delenv(name)
    settings = load_settings(
        tables=["shop.docs", "shop.notes"],
        connect={
            "column_truncate_to_length_chars": {
                "shop.docs.body": 1000,
                "shop.notes.text": 1000,
                "shop.docs.title": 80,
            },
            "column_exclude_list": ["shop.docs.attachment"],
        },
    )
    config = build_connector_config(settings)
    assert config["column.truncate.to.1000.chars"] == r"shop\.docs\.body,shop\.notes\.text"
    assert config["column.truncate.to.80.chars"] == r"shop\.docs\.title"
    assert config["column.exclude.list"] == r"shop\.docs\.attachment"


@pytest.mark.parametrize(
    ("connect", "message"),
    [
        ({"column_exclude_list": ["shop.docs"]}, "must be <db>.<table>.<column>"),
        ({"column_truncate_to_length_chars": {"shop.docs.body": 0}}, "must be >= 1"),
        ({"column_exclude_list": ["billing.invoices.pdf"]}, "uncaptured tables"),
    ],
)
def test_column_escapes_are_validated(connect: dict, message: str):
    with pytest.raises(ValueError, match=message):
        load_settings(tables=["shop.docs"], connect=connect)


def test_resync_signal_table_and_notifications_follow_settings(settings: Settings):
    changed = settings.model_copy(
        update={
            "mysql": settings.mysql.model_copy(update={"databases": ["billing", "shop"]}),
            "resync": settings.resync.model_copy(
                update={"signal_table": "dbz_signal", "chunk_size": 5000}
            ),
        }
    )

    config = build_connector_config(changed)

    # the signal table lives in the first captured database, and is not a captured table
    assert config["signal.data.collection"] == "billing.dbz_signal"
    assert "dbz_signal" not in config["table.include.list"]
    assert config["incremental.snapshot.chunk.size"] == "5000"
    # one dot: the bronze worker's <prefix>.<db>.<table> topic pattern must not take it
    assert config["notification.sink.topic.name"].count(".") == 1

"""The Debezium connector configuration (MySQL or MariaDB), built in exactly one place.

The local stack (`binlake up`) and production (docker-compose) both register the connector with
the output of `build_connector_config`, so what is tested locally is what runs in production.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from binlake.settings import Settings

# Debezium's binlog connectors share their options; only the class differs by server.
CONNECTOR_CLASSES = {
    "mysql": "io.debezium.connector.mysql.MySqlConnector",
    "mariadb": "io.debezium.connector.mariadb.MariaDbConnector",
}
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
MASK = "********"

# Keys whose values must never reach a log line. Matched as substrings of the lower-cased key.
_SECRET_MARKERS = ("password", "secret", "sasl.jaas.config", "token", "credential")


# Framing on top of a record's own bytes: record and batch headers, plus Debezium's key.
RECORD_FRAMING_BYTES = 64 * 1024
# Kafka's producer default `buffer.memory`; a record must fit in the buffer too.
PRODUCER_BUFFER_MEMORY_BYTES = 32 * 1024 * 1024


def request_limit_bytes(settings: Settings) -> int:
    """The size every hop accepts (producer request, topic, broker): the largest record the lake
    carries, `kafka.max_record_bytes`, plus framing. One number so no hop is the narrow one."""
    return settings.kafka.max_record_bytes + RECORD_FRAMING_BYTES


def large_record_config(settings: Settings) -> dict[str, str]:
    """Connector keys that let a change record of up to `kafka.max_record_bytes` through.

    `producer.override.*` needs the worker's `connector.client.config.override.policy=All`
    (the local worker sets it, and compose's Connect service); topics Debezium creates get the
    same `max.message.bytes`, so a broker with a smaller default does not refuse them.
    """
    limit = request_limit_bytes(settings)
    return {
        "producer.override.max.request.size": str(limit),
        "producer.override.buffer.memory": str(max(PRODUCER_BUFFER_MEMORY_BYTES, 2 * limit)),
        "topic.creation.default.max.message.bytes": str(limit),
    }


def column_options_config(settings: Settings) -> dict[str, str]:
    """Debezium's per-column escapes for a column too large to carry (settings.connect)."""
    config: dict[str, str] = {}
    by_length: dict[int, list[str]] = {}
    for column, chars in settings.connect.column_truncate_to_length_chars.items():
        by_length.setdefault(chars, []).append(column)
    for chars, columns in sorted(by_length.items()):
        # Debezium matches each entry as a regex on `<db>.<table>.<column>`.
        config[f"column.truncate.to.{chars}.chars"] = ",".join(re.escape(c) for c in columns)
    if settings.connect.column_exclude_list:
        config["column.exclude.list"] = ",".join(
            re.escape(c) for c in settings.connect.column_exclude_list
        )
    return config


def schema_history_topic(topic_prefix: str) -> str:
    """Topic where Debezium keeps the DDL history it needs to interpret old binlog events."""
    return f"{topic_prefix}.schema-history"


def signal_table(settings: Settings) -> str:
    """`<db>.<table>` of the Debezium signal table: in the first captured database."""
    return f"{settings.mysql.databases[0]}.{settings.resync.signal_table}"


def notification_topic(topic_prefix: str) -> str:
    """Topic Debezium's sink channel writes its notifications (incremental snapshot progress) to.

    One dot only, so the bronze worker's `<prefix>.<db>.<table>` pattern does not take it.
    """
    return f"{topic_prefix}.notifications"


def build_connector_config(settings: Settings) -> dict[str, str]:
    """The connector's configuration for `PUT /connectors/<name>/config`, every value a string."""
    mysql = settings.mysql
    prefix = settings.kafka.topic_prefix
    return {
        "connector.class": CONNECTOR_CLASSES[mysql.flavor],
        # The binlog is one ordered stream; a binlog connector never runs more than one task.
        "tasks.max": "1",
        "database.hostname": mysql.host,
        "database.port": str(mysql.port),
        "database.user": mysql.user,
        "database.password": mysql.password.get_secret_value(),
        "database.server.id": str(settings.connect.database_server_id),
        "topic.prefix": prefix,
        "database.include.list": ",".join(mysql.databases),
        # Debezium treats each entry as a regex anchored on `<db>.<table>`; escape the dot so
        # `shop.orders` cannot also match a table called `shopXorders`.
        "table.include.list": ",".join(re.escape(table) for table in settings.tables),
        "schema.history.internal.kafka.topic": schema_history_topic(prefix),
        "schema.history.internal.kafka.bootstrap.servers": settings.kafka.bootstrap_servers,
        # Resync (binlake.silver.resync): incremental snapshots started by rows inserted into the signal
        # table, progress reported as notifications on a topic of their own.
        "signal.enabled.channels": "source",
        "signal.data.collection": signal_table(settings),
        "incremental.snapshot.chunk.size": str(settings.resync.chunk_size),
        # The open watermark row is deleted at each window's close: the signal table keeps only
        # the signals, not two rows per chunk of every resync.
        "incremental.snapshot.watermarking.strategy": "insert_delete",
        "notification.enabled.channels": "sink",
        "notification.sink.topic.name": notification_topic(prefix),
        # A heartbeat carries the binlog position on while only uncaptured tables change (the
        # signal table): a resync's end is known once Connect has committed an offset past a
        # fence signal written after Debezium's COMPLETED (binlake.silver.resync.check_completion).
        "heartbeat.interval.ms": "2000",
        # Exact decimals as Connect Decimal (unscaled bytes + scale); cdc.connect_schema decodes them.
        "decimal.handling.mode": "precise",
        # BIGINT UNSIGNED above 2**63 - 1 would wrap to a negative long; as a Decimal(20,0) it
        # stays exact.
        "bigint.unsigned.handling.mode": "precise",
        # MySQL TIME is a duration (negative, > 24h) and DATETIME(6) needs microseconds.
        "time.precision.mode": "adaptive_time_microseconds",
        "snapshot.mode": "initial",
        "poll.interval.ms": str(settings.connect.poll_interval_ms),
        "topic.creation.default.replication.factor": "1",
        "topic.creation.default.partitions": "1",
        "include.schema.changes": "true",
        "tombstones.on.delete": "true",
        # Debezium skips TRUNCATE ("t") by default; silver must empty the table on one.
        "skipped.operations": "none",
        # Schemas travel with every record: the decoder maps Connect types to Arrow from them.
        "key.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": "true",
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": "true",
        # Kafka 3.7+ JsonConverter writes a column's default in place of a NULL value unless told
        # not to: a row inserted with n = NULL in `n VARCHAR(10) NULL DEFAULT 'x'` reached Kafka
        # as 'x' (seen on Connect 3.9 + Debezium 3.0.7). The schema keeps the default either way.
        "key.converter.replace.null.with.default": "false",
        "value.converter.replace.null.with.default": "false",
        **exactly_once_config(settings),
        **large_record_config(settings),
        **column_options_config(settings),
    }


def exactly_once_config(settings: Settings) -> dict[str, str]:
    """KIP-618 (the worker sets exactly.once.source.support=enabled): records and source offsets
    commit in one transaction; `required` makes the connector refuse to start on a worker
    without it rather than fall back to at-least-once. The bronze worker reads read_committed."""
    if not settings.connect.exactly_once:
        return {}
    return {"exactly.once.support": "required"}


def is_secret_key(key: str) -> bool:
    """True if the value of config key `key` is a credential."""
    lowered = key.lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


def redacted(config: Mapping[str, str]) -> dict[str, str]:
    """A copy of `config` safe to log: every credential value replaced by a mask."""
    return {key: (MASK if is_secret_key(key) and value else value) for key, value in config.items()}


def secret_values(config: Mapping[str, str]) -> list[str]:
    """The non-empty credential values in `config`, for scrubbing them out of server messages."""
    return [value for key, value in config.items() if is_secret_key(key) and value]

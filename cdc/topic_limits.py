"""Topics keep the `max.message.bytes` they were created with.

Debezium creates each table's topic with `topic.creation.default.max.message.bytes` (from
`kafka.max_record_bytes`), and a real broker enforces a topic's own limit. Raising the setting
later changes the connector's producer and topics created from then on, not the topics that
exist: the record that killed the task would be refused again, by the broker. So registering
the connector raises every existing topic of the prefix to the limit (never lowers one).
"""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from binlake.consumer_groups import LIBRDKAFKA_LOG
from binlake.errors import RetriableError

MAX_MESSAGE_BYTES = "max.message.bytes"


def raise_topic_limits(bootstrap_servers: str, prefix: str, limit: int) -> dict[str, int]:
    """Raise `max.message.bytes` of every topic named `<prefix>.*` that is below `limit`;
    returns the raised topics with their previous limits."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "logger": LIBRDKAFKA_LOG})
    try:
        topics = [
            name for name in admin.list_topics(timeout=15).topics if name.startswith(f"{prefix}.")
        ]
        if not topics:
            return {}
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in topics]
        below: dict[str, int] = {}
        for resource, future in admin.describe_configs(resources).items():
            current = int(future.result(15)[MAX_MESSAGE_BYTES].value)
            if current < limit:
                below[resource.name] = current
        changes = [
            ConfigResource(
                ResourceType.TOPIC,
                name,
                incremental_configs=[
                    ConfigEntry(
                        MAX_MESSAGE_BYTES,
                        str(limit),
                        incremental_operation=AlterConfigOpType.SET,
                    )
                ],
            )
            for name in sorted(below)
        ]
        if changes:
            for future in admin.incremental_alter_configs(changes).values():
                future.result(15)
        return below
    except KafkaException as exc:
        raise RetriableError(f"cannot raise the topics' {MAX_MESSAGE_BYTES}: {exc}") from exc

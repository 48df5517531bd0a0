"""Raising `kafka.max_record_bytes` reaches topics that exist already (real broker)."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from cdc.topic_limits import raise_topic_limits

pytestmark = pytest.mark.integration


def limit_of(admin: AdminClient, topic: str) -> int:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return int(admin.describe_configs([resource])[resource].result(15)["max.message.bytes"].value)


def test_existing_topics_of_the_prefix_are_raised_never_lowered(kafka_broker: str) -> None:
    prefix = f"p{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    small, large, other = f"{prefix}.shop.small", f"{prefix}.shop.large", f"x{prefix}.shop.t"
    topics = [
        NewTopic(small, 1, 1, config={"max.message.bytes": "1000000"}),
        NewTopic(large, 1, 1, config={"max.message.bytes": "9000000"}),
        NewTopic(other, 1, 1, config={"max.message.bytes": "1000000"}),
    ]
    for future in admin.create_topics(topics).values():
        future.result(15)

    assert raise_topic_limits(kafka_broker, prefix, 5_000_000) == {small: 1_000_000}
    assert (limit_of(admin, small), limit_of(admin, large), limit_of(admin, other)) == (
        5_000_000,
        9_000_000,
        1_000_000,
    )
    assert raise_topic_limits(kafka_broker, prefix, 5_000_000) == {}  # idempotent

"""The Kafka cluster whose consumer groups a replay moves."""

from __future__ import annotations

import dagster as dg

from binlake.consumer_groups import GroupOffsetsClient


class KafkaConsumerGroups(dg.ConfigurableResource):
    """Consumer group offsets and partition facts of one Kafka cluster (confluent-kafka admin)."""

    bootstrap_servers: str

    def client(self) -> GroupOffsetsClient:
        return GroupOffsetsClient(self.bootstrap_servers)

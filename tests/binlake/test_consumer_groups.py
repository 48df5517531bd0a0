"""The Kafka clients of binlake.consumer_groups log through Python logging, never to stderr."""

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from binlake.consumer_groups import GroupOffsetsClient
from binlake.local_stack.network import free_port


def test_a_broker_that_is_not_there_leaves_stderr_alone(capfd) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": nowhere}).list_topics(timeout=2)
    assert "Connection refused" in capfd.readouterr().err  # librdkafka's default: to stderr

    with pytest.raises(KafkaException):
        GroupOffsetsClient(nowhere, timeout=2).partitions("binlake.shop.orders")
    assert capfd.readouterr().err == ""

"""The Kafka clients of binlake.consumer_groups log through Python logging, never to stderr."""

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from binlake import consumer_groups
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


def test_a_broker_still_settling_leadership_is_asked_again_other_errors_are_not() -> None:
    settling = KafkaException(KafkaError(KafkaError.UNKNOWN_LEADER_EPOCH))
    assert consumer_groups._leadership_settling(settling)
    assert not consumer_groups._leadership_settling(
        KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    )
    assert not consumer_groups._leadership_settling(ValueError("not Kafka's"))

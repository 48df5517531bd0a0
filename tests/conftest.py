"""What every test package may share: one real Kafka broker per test session.

A KRaft broker (Apache Kafka from `binlake setup`'s Maven cache) starts on first use, on free
ports, with its data in a session temp dir, and is stopped by its PID at the end. Tests that
share it keep apart by their own topic names and consumer group ids.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from binlake.local_stack.foreground import start_kafka_broker, stop_process


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's broker; yields its bootstrap address."""
    broker, process = start_kafka_broker(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker.bootstrap_servers
    finally:
        stop_process(process)

"""What every test package may share: one real Kafka broker per test session.

A KRaft broker (Apache Kafka from `binlake setup`'s Maven cache) starts on first use, on free
ports, with its data in a session temp dir, and is stopped by its PID at the end. Tests that
share it keep apart by their own topic names and consumer group ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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


INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The folder says how slow a test is: `tests/integration/` holds every test marked
    `integration` or using the real broker, and only those."""
    misplaced = []
    for item in items:
        in_folder = INTEGRATION_DIR in item.path.parents
        marked = item.get_closest_marker("integration") is not None
        uses_broker = "kafka_broker" in getattr(item, "fixturenames", ())
        if in_folder != marked or (uses_broker and not in_folder):
            misplaced.append(item.nodeid)
    if misplaced:
        raise pytest.UsageError(
            "tests/integration/ must hold exactly the tests marked integration or using the "
            "real broker; misplaced:\n" + "\n".join(misplaced)
        )

"""What every test package may share: one real Kafka broker per test session.

A KRaft broker (Apache Kafka from `binlake setup`'s Maven cache) starts on first use, on free
ports, with its data in a session temp dir, and is stopped by its PID at the end. Tests that
share it keep apart by their own topic names and consumer group ids.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from binlake.jvm_artifacts import ensure_jvm_artifacts
from binlake.local_stack.kafka_broker import KafkaBroker
from binlake.local_stack.network import free_port, port_is_open, wait_until
from binlake.settings import LocalStackSettings

# As the local stack's default (kafka.max_record_bytes + framing): tests may send large records.
TEST_BROKER_MESSAGE_MAX_BYTES = 32 * 1024 * 1024 + 64 * 1024


def start_kafka_broker(
    home: Path, *, port: int | None = None
) -> tuple[KafkaBroker, subprocess.Popen]:
    """A KRaft broker under `home`, started and accepting connections; the caller stops it by
    the returned handle (SIGTERM, then SIGKILL). The same `home` and port start it again with
    its data."""
    local = LocalStackSettings()
    broker = KafkaBroker(
        home=home,
        host="127.0.0.1",
        port=port or free_port(),
        classpath=ensure_jvm_artifacts(local.jvm_cache_dir, maven=local.maven).classpath,
        heap=local.broker_heap,
        message_max_bytes=TEST_BROKER_MESSAGE_MAX_BYTES,
    )
    command = broker.prepare()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "broker.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(
            lambda: port_is_open(broker.host, broker.port),
            what=f"Kafka broker (log: {home / 'broker.log'})",
            timeout_s=60,
            still_alive=lambda: process.poll() is None,
        )
    except BaseException:
        stop_broker(process)
        raise
    return broker, process


def stop_broker(process: subprocess.Popen, timeout: float = 30.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's broker; yields its bootstrap address."""
    broker, process = start_kafka_broker(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker.bootstrap_servers
    finally:
        stop_broker(process)

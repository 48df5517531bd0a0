"""Components started outside supervisord, by a test session or a benchmark: a child process
started until ready, and stopped by its handle (its PID), never by name."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from binlake.jvm_artifacts import ensure_jvm_artifacts
from binlake.local_stack.kafka_broker import KafkaBroker
from binlake.local_stack.network import free_port, port_is_open, wait_until
from binlake.settings import LocalStackSettings

# As the local stack's default (kafka.max_record_bytes + framing), so large records pass.
DEFAULT_MESSAGE_MAX_BYTES = 32 * 1024 * 1024 + 64 * 1024


def start_until_ready(
    command: list[str], log: Path, ready: Callable[[], bool], what: str, timeout_s: float = 60
) -> subprocess.Popen:
    """Start `command` with its output appended to `log`, and wait until `ready`; a process
    that exits or does not get ready in time is stopped and the error names its log."""
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(
            ready,
            what=f"{what} (log: {log})",
            timeout_s=timeout_s,
            still_alive=lambda: process.poll() is None,
        )
    except BaseException:
        stop_process(process)
        raise
    return process


def stop_process(process: subprocess.Popen, timeout: float = 30.0) -> int | None:
    """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    return process.returncode


def start_kafka_broker(
    home: Path, *, port: int | None = None, message_max_bytes: int = DEFAULT_MESSAGE_MAX_BYTES
) -> tuple[KafkaBroker, subprocess.Popen]:
    """A KRaft broker under `home` (Kafka from `binlake setup`'s cache), accepting connections.
    The same `home` and port start it again with its data."""
    local = LocalStackSettings()
    broker = KafkaBroker(
        home=home,
        host="127.0.0.1",
        port=port or free_port(),
        classpath=ensure_jvm_artifacts(local.jvm_cache_dir, maven=local.maven).classpath,
        heap=local.broker_heap,
        message_max_bytes=message_max_bytes,
    )
    command = broker.prepare()
    process = start_until_ready(
        command,
        home / "broker.log",
        lambda: port_is_open(broker.host, broker.port),
        "Kafka broker",
    )
    return broker, process

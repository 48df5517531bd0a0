"""Components started outside supervisord, by a test session or a benchmark: a child process
started until ready, and stopped by its handle (its PID), never by name."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from binlake.jvm_artifacts import ensure_jvm_artifacts
from binlake.local_stack.kafka_broker import KafkaBroker
from binlake.local_stack.network import free_port, port_is_open, wait_until
from binlake.local_stack.s3_server import S3Server, find_weed, free_server_ports
from binlake.settings import LocalStackSettings

# As the local stack's default (kafka.max_record_bytes + framing), so large records pass.
DEFAULT_MESSAGE_MAX_BYTES = 32 * 1024 * 1024 + 64 * 1024


def start_until_ready(
    command: list[str],
    log: Path,
    ready: Callable[[], bool],
    what: str,
    timeout_s: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start `command` (in `env`, default this process's environment) with its output appended
    to `log`, and wait until `ready`; a process that exits or does not get ready in time is
    stopped and the error names its log."""
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
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


def start_s3_server(
    data_dir: Path, *, access_key: str, secret_key: str, bucket: str = "lake"
) -> tuple[S3Server, subprocess.Popen]:
    """A SeaweedFS `weed mini` with its data in `data_dir` (which should be new), on free ports,
    whose `bucket` answers signed requests. Stop it with `stop_s3_server`."""
    server = S3Server(
        data_dir=data_dir,
        ports=free_server_ports(),
        access_key=access_key,
        secret_key=secret_key,
        bucket=bucket,
        executable=find_weed(),
    )
    command = server.prepare()
    try:
        process = start_until_ready(
            command,
            server.log_dir / "weed.out",
            server.is_ready,
            "S3 server (SeaweedFS weed mini)",
            env=server.environment(),
        )
    except BaseException:
        server.remove_sockets()
        raise
    return server, process


def stop_s3_server(server: S3Server, process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop the server by its PID and delete the sockets it left under /tmp (its data dir is
    the caller's)."""
    try:
        stop_process(process, timeout)
    finally:
        server.remove_sockets()


@contextmanager
def temporary_s3_server(
    *, access_key: str, secret_key: str, bucket: str, prefix: str, stop_timeout: float
) -> Iterator[S3Server]:
    """An S3 server (`start_s3_server`) with its data in a new temp dir named from `prefix`;
    stopped by its PID (`stop_s3_server`, waiting `stop_timeout` s) and the dir removed after."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        server, process = start_s3_server(
            data_dir, access_key=access_key, secret_key=secret_key, bucket=bucket
        )
        try:
            yield server
        finally:
            stop_s3_server(server, process, timeout=stop_timeout)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

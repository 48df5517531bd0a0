"""The local S3 server (SeaweedFS `weed mini`): ports, readiness, signed requests, clean stop,
and the local stack's lake on it (`binlake up --object-store`)."""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest

from binlake.errors import ConfigurationError
from binlake.local_stack import components
from binlake.local_stack.foreground import start_s3_server, stop_s3_server
from binlake.local_stack.network import port_is_free, wait_until
from binlake.local_stack.runtime import resolve_free_ports, save_runtime_settings
from binlake.local_stack.s3_server import (
    GRPC_PORT_OFFSET,
    LOCAL_S3_LAKE_URL,
    S3Server,
    free_server_ports,
)
from binlake.local_stack.supervisor import Program, Supervisor
from binlake.settings import load_settings
from binlake.storage import LakeStorage
from tests.support.s3_server import S3Lake


def test_free_server_ports_leave_room_for_grpc_below_the_ephemeral_range() -> None:
    ports = free_server_ports().all()

    assert len(set(ports) | {p + GRPC_PORT_OFFSET for p in ports}) == 2 * len(ports)
    assert all(p + GRPC_PORT_OFFSET < 32768 for p in ports)
    assert all(port_is_free(p) and port_is_free(p + GRPC_PORT_OFFSET) for p in ports)


def test_the_session_server_answers_signed_requests_and_rejects_unsigned(
    s3_server: S3Server, s3_lake: S3Lake
) -> None:
    signed = s3_server.filesystem()
    with signed.open_output_stream(f"{s3_lake.bucket}/{s3_lake.prefix}/a.txt") as out:
        out.write(b"hello")
    with signed.open_input_stream(f"{s3_lake.bucket}/{s3_lake.prefix}/a.txt") as stream:
        assert stream.read() == b"hello"

    anonymous = pafs.S3FileSystem(
        anonymous=True, endpoint_override=s3_lake.endpoint_url, region=s3_lake.region
    )
    with (
        pytest.raises(OSError, match=r"ACCESS_DENIED|403"),
        anonymous.open_input_stream(f"{s3_lake.bucket}/{s3_lake.prefix}/a.txt") as stream,
    ):
        stream.read()


def test_repr_hides_the_keys(s3_server: S3Server, s3_lake: S3Lake) -> None:
    assert s3_server.secret_key not in repr(s3_server)
    assert s3_lake.secret_key not in repr(s3_lake)


def test_stop_ends_the_process_and_removes_its_sockets(tmp_path) -> None:
    server, process = start_s3_server(tmp_path / "s3", access_key="k", secret_key="s")
    assert server.socket_files()

    stop_s3_server(server, process)

    assert process.poll() is not None
    assert server.socket_files() == []
    assert all(port_is_free(p) for p in server.ports.all())


def test_the_local_stack_puts_the_lake_on_its_s3_server_and_keeps_the_port(tmp_path) -> None:
    settings = load_settings(state_dir=tmp_path, local={"object_store": True})

    resolved = resolve_free_ports(settings)

    port = resolved.local.s3_port
    assert port > 0 and port + GRPC_PORT_OFFSET < 32768
    assert resolved.lake_url == LOCAL_S3_LAKE_URL
    assert resolved.storage.endpoint_url == f"http://127.0.0.1:{port}"
    assert resolved.storage.http_allowed
    assert LakeStorage.from_settings(resolved).storage_options["AWS_ACCESS_KEY_ID"]
    save_runtime_settings(resolved)
    assert resolve_free_ports(settings).local.s3_port == port  # kept across down and up

    with pytest.raises(ConfigurationError, match="leave storage_url"):
        resolve_free_ports(settings.model_copy(update={"storage_url": "s3://other/lake"}))


def test_the_server_keeps_its_other_ports_with_its_data(tmp_path) -> None:
    settings = resolve_free_ports(load_settings(state_dir=tmp_path, local={"object_store": True}))
    first = components.s3_server(settings)
    again = components.s3_server(settings)
    assert first.ports == again.ports and first.ports.s3 == settings.local.s3_port
    assert first.data_dir == tmp_path.resolve() / "s3" and first.bucket == "binlake"
    assert f"-s3.port={settings.local.s3_port}" in first.command()


def test_supervisord_runs_the_local_s3_server_and_stops_it(tmp_path) -> None:
    """The S3 program as `binlake up --object-store` writes it, under a real supervisord."""
    settings = resolve_free_ports(load_settings(state_dir=tmp_path, local={"object_store": True}))
    server = components.s3_server(settings)
    server.prepare()
    supervisor = Supervisor(tmp_path)
    program = Program(components.S3, server.command(), environment=server.environment({}))
    supervisor.write_config([program])
    try:
        supervisor.start_daemon(settings.env())
        supervisor.start(components.S3)
        wait_until(server.is_ready, what="local S3 server", timeout_s=60)
        storage = LakeStorage.from_settings(settings)
        storage.write_atomic("bronze/x.parquet", b"data")
        assert storage.read_bytes("bronze/x.parquet") == b"data"
    finally:
        supervisor.shutdown(timeout_s=30)
        server.remove_sockets()
    assert not supervisor.is_running()
    assert all(port_is_free(p) for p in server.ports.all())

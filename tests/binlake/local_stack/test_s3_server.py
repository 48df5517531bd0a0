"""The local S3 server (SeaweedFS `weed mini`): ports, readiness, signed requests, clean stop."""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest

from binlake.local_stack.foreground import start_s3_server, stop_s3_server
from binlake.local_stack.network import port_is_free
from binlake.local_stack.s3_server import GRPC_PORT_OFFSET, S3Server, free_server_ports
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

"""Which services answer, probed by TCP connect against real sockets on free ports."""

import socket
from collections.abc import Iterator

import pytest

from binlake.local_stack.network import free_port
from binlake.local_stack.reachability import Service, advice, unreachable
from binlake.settings import load_settings


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_a_service_answers_when_one_of_its_addresses_accepts(listening, tmp_path) -> None:
    closed = free_port()
    settings = load_settings(
        state_dir=tmp_path,
        kafka={"bootstrap_servers": f"127.0.0.1:{closed},127.0.0.1:{listening}"},
        connect={"url": f"http://127.0.0.1:{closed}"},
        mysql={"port": 0},  # not chosen yet: a stack that never started
    )
    down = unreachable(settings, (Service.KAFKA, Service.CONNECT, Service.MYSQL))
    assert [(a.service, a.port) for a in down] == [(Service.CONNECT, closed), (Service.MYSQL, 0)]
    assert unreachable(settings, (Service.KAFKA,)) == []


def test_advice_says_what_to_run_for_the_local_stack(tmp_path) -> None:
    settings = load_settings(state_dir=tmp_path, connect={"url": "http://127.0.0.1:1"})
    down = unreachable(settings, (Service.CONNECT,))
    assert advice(settings, down, stack_running=False) == (
        f"the local stack under {tmp_path} is not running (Kafka Connect down): start it with "
        "`binlake up`"
    )
    assert advice(settings, down, stack_running=True) == (
        "Kafka Connect at 127.0.0.1:1 not answering although the local stack runs (`binlake "
        "status` shows each component): start it again with `binlake up`"
    )

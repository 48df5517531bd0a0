"""Ports: choose free ones, wait for one to accept connections."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from binlake.errors import RetriableError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on `port` (and it may be bound now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers do: connections of a stopped server in TIME_WAIT do not hold the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_is_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    timeout_s: float,
    still_alive: Callable[[], bool] = lambda: True,
    interval_s: float = 0.2,
) -> float:
    """Poll `ready` until true; returns seconds waited. Fails fast if `still_alive` says no."""
    start = time.monotonic()
    while True:
        if ready():
            return time.monotonic() - start
        if not still_alive():
            raise RetriableError(f"{what}: the process exited before it became ready")
        if time.monotonic() - start > timeout_s:
            raise RetriableError(f"{what}: not ready after {timeout_s:.0f} s")
        time.sleep(interval_s)

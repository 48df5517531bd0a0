"""Processes a test starts and waits on: polling with the logs' tails on a timeout, and
fixture `processes`, which ends what a test started."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from binlake.local_stack.foreground import stop_process

REPO = Path(__file__).resolve().parents[2]


def run_python_module(
    module: str, *args: str, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """`python -m module *args` in the repository with `env`; its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, logs: Path | list[Path] = ()
) -> float:
    """Poll `predicate` until true; seconds waited. `timeout` only bounds a hang: the failure
    shows the tail of `logs` (one log, or several)."""
    logs = [logs] if isinstance(logs, Path) else logs
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            tails = "\n".join(
                f"--- {log}\n{log.read_text(errors='replace')[-4000:]}"
                for log in logs
                if log.exists()
            )
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tails}")
        time.sleep(0.05)
    return time.monotonic() - start


def log_text(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


class Processes:
    """Processes a test started; `stop()` ends one by its handle, teardown ends the rest."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def add(self, process: subprocess.Popen) -> subprocess.Popen:
        self.started.append(process)
        return process

    def stop(self, process: subprocess.Popen, timeout: float = 30.0) -> int:
        stop_process(process, timeout)
        return process.returncode


@pytest.fixture
def processes() -> Iterator[Processes]:
    registry = Processes()
    try:
        yield registry
    finally:
        for process in registry.started:
            stop_process(process, timeout=10.0)

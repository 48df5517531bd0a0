"""What the benchmark scripts share: a local stack of their own on free ports, in a temporary
state directory removed afterwards unless kept."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from binlake.local_stack.stack import LocalStack
from binlake.settings import Settings, load_settings

T = TypeVar("T")


def free_port_settings(state_dir: Path, **groups: Any) -> Settings:
    """Settings of a stack in `state_dir` on free ports; `groups` adds to a settings group
    (`mysql=`, `dagster=`, ...) or sets a top-level setting (`tables=`)."""
    values: dict[str, Any] = {
        "mysql": {"port": 0},
        "kafka": {"bootstrap_servers": "127.0.0.1:0"},
        "connect": {"url": "http://127.0.0.1:0"},
        "dagster": {"port": 0},
        "sql": {"port": 0},
    }
    for name, value in groups.items():
        values[name] = {**values.get(name, {}), **value} if isinstance(value, dict) else value
    return load_settings(state_dir=state_dir, **values)


@contextmanager
def temporary_state(prefix: str, keep: bool, say: Callable[[str], Any] = print) -> Iterator[Path]:
    """A new directory named `prefix...`; removed at the end unless `keep` (then `say` where)."""
    state = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield state
    finally:
        if keep:
            say(f"state kept in {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)


def on_a_stack_of_its_own(
    prefix: str, keep: bool, say: Callable[[str], Any], run: Callable[[Settings], T]
) -> T:
    """`run(settings)` for a stack in a temporary state directory on free ports (`run` starts
    it); the stack is stopped by its supervisor afterwards, whatever `run` left running."""
    with temporary_state(prefix, keep, say) as state:
        settings = free_port_settings(state)
        try:
            return run(settings)
        finally:
            LocalStack(settings).down()

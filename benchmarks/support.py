"""What the benchmark scripts share: the settings of a local stack of their own on free ports,
and a temporary state directory for it, removed afterwards unless kept."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from binlake.settings import Settings, load_settings


def free_port_settings(state_dir: Path, **groups: Any) -> Settings:
    """Settings of a stack in `state_dir` on free ports; `groups` adds to a settings group
    (`mysql=`, `dagster=`, ...) or sets a top-level setting (`tables=`)."""
    values: dict[str, Any] = {
        "mysql": {"port": 0},
        "kafka": {"bootstrap_servers": "127.0.0.1:0"},
        "connect": {"url": "http://127.0.0.1:0"},
        "dagster": {"port": 0},
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

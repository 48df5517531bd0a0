"""The Faust bronze app in-process for agent tests: settings pointing at a temp lake, an
in-memory table store, a fake clock, and a scenario run inside the agent's test context."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from binlake.settings import load_settings
from streams.app import BronzeApp, create_app


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def in_memory_app(
    tmp_path: Path, clock: FakeClock, topic: str, *, flush_rows: int, lake_dir: Path | None = None
) -> BronzeApp:
    """The bronze app over `lake_dir` (tmp_path/lake by default), flushing every `flush_rows`
    rows (and after a minute), its agent subscribed to `topic` as discovery would have."""
    settings = load_settings(
        storage_url=str(lake_dir or tmp_path / "lake"),
        state_dir=tmp_path / "state",
        bronze={"flush_rows": flush_rows, "flush_seconds": 60.0},
    )
    app = create_app(settings, clock=clock)
    app.bronze.directory.offer([topic])  # as discovery would have
    app.finalize()
    app.conf.store = "memory://"
    app.flow_control.resume()
    return app


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def put_changes_until_acked(agent: Any, table: Any, ids: range) -> None:
    """Inserts of rows `ids` of `table` (a DebeziumTable) put to partition 0, then waits until
    the agent has acked every one."""
    events = []
    for i in ids:
        key, value = table.change("c", i)
        events.append(await agent.put(value, key=key, partition=0))
    await until(lambda: all(e.message.acked for e in events))


def run(app: BronzeApp, scenario: Callable[[Any], Awaitable[None]]) -> None:
    """`scenario(agent)` inside the bronze agent's test context, on a new event loop."""

    async def main() -> None:
        async with app.bronze.agent.test_context() as agent:
            await scenario(agent)

    asyncio.run(main())

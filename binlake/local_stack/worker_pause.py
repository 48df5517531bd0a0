"""The local stack's bronze worker stopped for a while: what `binlake replay --stop-worker` runs
its reset in. The worker is started again afterwards, also when the reset failed, so a replay
never leaves bronze without its writer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from binlake.bronze.replay import wait_for_idle_group
from binlake.consumer_groups import GroupOffsetsClient
from binlake.local_stack.components import BRONZE_WORKER
from binlake.local_stack.stack import LocalStack

# A worker stopped cleanly leaves its group at once; one that could not is dropped by the broker
# after its session timeout (streams.app: 10 s).
GROUP_IDLE_TIMEOUT_SECONDS = 30.0


@contextmanager
def bronze_worker_stopped(
    stack: LocalStack,
    *,
    progress: Callable[[str], None] = lambda message: None,
    timeout_s: float = GROUP_IDLE_TIMEOUT_SECONDS,
) -> Iterator[bool]:
    """The stack's bronze worker stopped and its consumer group empty inside the block, started
    again after it; yields whether the worker had been running (False: none under this state
    directory, nothing stopped)."""
    settings = stack.settings
    if not stack.is_running() or not any(
        c.name == BRONZE_WORKER and c.state == "RUNNING" for c in stack.components()
    ):
        progress(f"no bronze worker runs under {settings.state_dir}: nothing to stop")
        yield False
        return
    progress("stopping the bronze worker")
    stack.stop(BRONZE_WORKER)
    try:
        wait_for_idle_group(
            GroupOffsetsClient(settings.kafka.bootstrap_servers),
            settings.bronze.app_id,
            timeout_s=timeout_s,
        )
        yield True
    finally:
        stack.start(BRONZE_WORKER)
        progress("bronze worker started again")

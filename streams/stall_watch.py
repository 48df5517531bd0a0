"""Noticing a partition whose records wait on the broker but are never delivered, and healing it.

Seen twice in CI, never reproduced on demand: a new topic's first records arrived during the
rebalance that subscribed to it, two were delivered and the third only seven minutes later, at
the next rebalance; and after a broker SIGKILL the fetcher delivered nothing for minutes. In both
the consumer's position had moved past records no agent saw, and only a seek back to the
committed offsets (which every rebalance does) brought them.

`StallWatch` is the decision, free of Faust and the clock: a partition is stalled when the broker
holds records after what was delivered (its last stable offset is more than one offset past the
next one to deliver: one is allowed, the commit marker that ends every transaction of Kafka
Connect's exactly-once producer) and no record of it was delivered for `stall_seconds`. The
remedy is a seek back to the committed offsets (records delivered twice are released by the
bronze writers as already handled). If the consumer's position has not moved since that seek,
the fetcher itself is stuck and the worker is restarted (from the committed offsets, as always).
A position that moves while nothing is delivered is either the same fault again or a partition
ending in an aborted transaction (its records are never delivered to a read_committed reader);
each further seek of it waits twice as long, so such a partition costs a cheap seek now and then
and never a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from enum import Enum

log = logging.getLogger(__name__)

# No delivery for this long while records wait: the partition is stalled.
STALL_SECONDS = 20.0
# Each further seek of the same partition waits this many times longer (at most 2**8 times).
BACKOFF_FACTOR = 2.0
MAX_BACKOFF_STEPS = 8


class Remedy(Enum):
    NONE = "none"
    SEEK = "seek back to the committed offsets"
    RESTART = "restart the worker"


@dataclass(frozen=True)
class PartitionProgress:
    """What the consumer knows of one partition: the last offset delivered (None: nothing since
    the last seek), the committed offset (the next one to read; None: none yet), the fetch
    position (None: not asked, as nothing waits) and the broker's last stable offset (the next
    offset a read_committed reader can get)."""

    delivered: int | None
    committed: int | None
    position: int | None
    last_stable: int

    def waiting(self) -> int:
        """Offsets the broker holds after the next one to deliver, beyond one commit marker."""
        next_offset = self.delivered + 1 if self.delivered is not None else self.committed or 0
        return max(0, self.last_stable - next_offset - 1)


@dataclass
class _Watched:
    delivered: int | None
    since: float  # when `delivered` last changed, records started to wait, or the last seek
    seeks: int = 0
    position_at_seek: int | None = None


class StallWatch:
    """Decides, check by check, whether a partition is stalled and what to do about it."""

    def __init__(self, clock: Callable[[], float], *, stall_seconds: float = STALL_SECONDS):
        self.clock = clock
        self.stall_seconds = stall_seconds
        self._watched: dict[Hashable, _Watched] = {}

    def check(self, progress: Mapping[Hashable, PartitionProgress]) -> tuple[Remedy, list]:
        """The remedy for the partitions in `progress` (the assigned ones, while the flow runs)
        and the stalled partitions it is for. Partitions not in `progress` are forgotten."""
        now = self.clock()
        for gone in self._watched.keys() - progress.keys():
            del self._watched[gone]
        stalled: list[Hashable] = []
        for tp, seen in progress.items():
            watched = self._watched.get(tp)
            if watched is None or watched.delivered != seen.delivered or not seen.waiting():
                # Delivering, or nothing waits: the clock starts again, and a delivery after a
                # seek shows the seek helped, so the backoff starts again too.
                delivered = watched is not None and watched.delivered != seen.delivered
                seeks = 0 if watched is None or delivered else watched.seeks
                self._watched[tp] = _Watched(seen.delivered, now, seeks)
                continue
            patience = self.stall_seconds * BACKOFF_FACTOR ** min(watched.seeks, MAX_BACKOFF_STEPS)
            if now - watched.since >= patience:
                stalled.append(tp)
        if not stalled:
            return Remedy.NONE, []
        if any(self._fetcher_stuck(self._watched[tp], progress[tp]) for tp in stalled):
            return Remedy.RESTART, stalled
        for tp in stalled:
            watched = self._watched[tp]
            watched.seeks += 1
            watched.since = now
            watched.position_at_seek = None  # known at the next check, after the seek
        return Remedy.SEEK, stalled

    def seeked(self, progress: Mapping[Hashable, PartitionProgress]) -> None:
        """Note the positions right after a seek, to tell a stuck fetcher at the next stall."""
        for tp, seen in progress.items():
            watched = self._watched.get(tp)
            if watched is not None and watched.seeks:
                # The seek moved what counts as delivered (Faust resets it to the committed
                # offset): not a delivery.
                watched.delivered = seen.delivered
                watched.position_at_seek = seen.position

    @staticmethod
    def _fetcher_stuck(watched: _Watched, seen: PartitionProgress) -> bool:
        """A seek was made, and the position has not moved since although records wait."""
        return (
            watched.seeks > 0
            and watched.position_at_seek is not None
            and seen.position == watched.position_at_seek
            and seen.position is not None
            and seen.position < seen.last_stable - 1
        )


class PartitionStalledError(Exception):
    """Records wait on the broker, a seek did not move the fetcher: the worker restarts."""

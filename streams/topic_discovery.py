"""Finding the CDC topics on the broker and getting Faust to subscribe to them.

Faust's own pattern subscription (`app.topic(pattern=...)`) subscribes to nothing
(faust-streaming/faust#62; the aiokafka driver's `subscribe()` passes only topic names), so
`TopicDiscovery` lists the broker's topics every `DISCOVERY_INTERVAL_SECONDS`, keeps those matching
the pattern in a `TopicDirectory`, and a `DiscoveredTopic` (a Faust topic whose names are the
directory's) makes Faust subscribe to them. Topics Debezium creates after the worker started are
picked up the same way.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient

log = logging.getLogger(__name__)

# How often the broker's topic list is read to find new CDC topics.
DISCOVERY_INTERVAL_SECONDS = 1.0
# Faust waits this long after a subscription change before resubscribing (its default is 45 s).
RESUBSCRIBE_DELAY_SECONDS = 0.2
# A requested resubscription that has not happened after this long is requested again
# (Faust drops a change requested while the group is rebalancing).
RESUBSCRIBE_RETRY_SECONDS = 20.0


def cdc_topic_pattern(topic_prefix: str) -> re.Pattern[str]:
    """Topics Debezium writes row changes to: `<prefix>.<db>.<table>` (not the DDL topic)."""
    return re.compile(rf"^{re.escape(topic_prefix)}\.[^.]+\.[^.]+$")


class TopicDirectory:
    """The CDC topics found so far: names matching `pattern`, a set that only grows."""

    def __init__(self, pattern: re.Pattern[str]):
        self.pattern = pattern
        self._names: list[str] = []
        self._known: set[str] = set()

    def names(self) -> list[str]:
        return list(self._names)

    def offer(self, names: Iterable[str]) -> list[str]:
        """Add the matching names not known yet; returns them, sorted."""
        new = sorted({n for n in names if n not in self._known and self.pattern.match(n)})
        if new:
            self._known.update(new)
            self._names = sorted(self._known)
        return new


class DiscoveredTopic(faust.Topic):
    """A Faust topic whose names are those of a `TopicDirectory`, shared by all its clones.

    Faust reads `topic.topics` whenever it (re)builds its subscription and its routing of
    partitions to streams, so names added to the directory are used at the next resubscription.
    """

    def __init__(self, app: faust.App, *, directory: TopicDirectory, **kwargs: Any):
        self.directory = directory
        super().__init__(app, **kwargs)

    @property  # type: ignore[override]
    def topics(self) -> Sequence[str]:
        return self.directory.names()

    @topics.setter
    def topics(self, names: Sequence[str] | None) -> None:
        self.directory.offer(names or ())

    def _clone_args(self) -> dict[str, Any]:
        return {**super()._clone_args(), "directory": self.directory}


class TopicDiscovery:
    """Finds CDC topics on the broker and gets Faust to subscribe to new ones."""

    def __init__(
        self,
        app: faust.App,
        directory: TopicDirectory,
        bootstrap_servers: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.app = app
        self.directory = directory
        self.bootstrap_servers = bootstrap_servers
        self.clock = clock
        self._admin: AIOKafkaAdminClient | None = None  # opened on first use, again after errors
        self._failing = False  # listing failed last time (warned once)
        # Topics a resubscription was last requested for, and when.
        self._requested: set[str] = set()
        self._requested_at = 0.0

    async def refresh(self) -> list[str]:
        """Read the broker's topics; returns the CDC topics seen for the first time."""
        try:
            if self._admin is None:
                self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
                await self._admin.start()
            names = await self._admin.list_topics()
        except Exception as exc:  # noqa: BLE001 - the broker may be down; try again later
            if not self._failing:
                log.warning("cannot list topics on %s: %s", self.bootstrap_servers, exc)
            self._failing = True
            await self.close()
            return []
        self._failing = False
        new = self.directory.offer(names)
        if new:
            log.info("found CDC topics: %s", ", ".join(new))
        self.ensure_subscribed()
        return new

    def ensure_subscribed(self) -> None:
        """Ask Faust to resubscribe if a known topic is not in its subscription."""
        # Faust has no public API for this; these are the conductor's own index of subscribed
        # topic names and the hook that `Conductor.add()` uses to request a resubscription.
        conductor: Any = self.app.topics
        subscribed = conductor._topic_name_index
        missing = {name for name in self.directory.names() if name not in subscribed}
        if not missing:
            return
        now = self.clock()
        if missing <= self._requested and now - self._requested_at < RESUBSCRIBE_RETRY_SECONDS:
            return
        self._requested, self._requested_at = missing, now
        log.info("subscribing to %s", ", ".join(sorted(missing)))
        conductor._flag_changes()

    async def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                await admin.close()
            except Exception as exc:  # noqa: BLE001 - closing a broken client
                log.debug("closing admin client: %s", exc)

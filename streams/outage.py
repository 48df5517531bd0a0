"""Reports a retry-with-backoff episode in the log: once when it starts, reminders, once when over.

The bronze worker retries whatever is merely unavailable (the lake, the schema registry, the
dead-letter topic) instead of skipping records; an `Outage` turns those many failed attempts
into a few log lines an operator can read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable

log = logging.getLogger(__name__)

# While an outage lasts, the log is reminded of it this often (plus once at start and end).
OUTAGE_REMINDER_SECONDS = 30.0


class Outage:
    """Reports one kind of outage in the log: once when it starts, reminders, once when it ends.

    Callers that retry report each failed attempt with `failed(exc, key)`, `key` naming what
    failed (a topic-partition), and `cleared(key)` once that same thing worked again. The log
    gets an error line when the first key fails, a reminder every `remind_every` seconds while
    any key is still failing, and one line when the last one is cleared: never a line per record
    or per attempt, and no flapping when one table's directory fails while another's works.
    """

    def __init__(
        self,
        what: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        remind_every: float = OUTAGE_REMINDER_SECONDS,
        consequence: str = "",
        logger: logging.Logger = log,
    ):
        self.what = what
        self.clock = clock
        self.remind_every = remind_every
        self.consequence = consequence
        self.log = logger
        self.since: float | None = None
        self.failing: set[Hashable] = set()
        self.failures = 0  # failed attempts in the current episode
        self.episodes = 0
        self._last_report = 0.0

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException, key: Hashable, where: str = "") -> None:
        now = self.clock()
        at = f" ({where})" if where else ""
        self.failing.add(key)
        if self.since is None:
            self.since, self._last_report, self.failures = now, now, 1
            self.episodes += 1
            self.log.error("%s unavailable%s: %s. %s", self.what, at, exc, self.consequence)
            return
        self.failures += 1
        if now - self._last_report >= self.remind_every:
            self._last_report = now
            self.log.warning(
                "%s still unavailable after %.0fs and %d failed attempts%s: %s",
                self.what,
                now - self.since,
                self.failures,
                at,
                exc,
            )

    def cleared(self, key: Hashable) -> None:
        if key not in self.failing:
            return
        self.failing.discard(key)
        if self.failing or self.since is None:
            return
        self.log.warning(
            "%s available again after %.1fs and %d failed attempts",
            self.what,
            self.clock() - self.since,
            self.failures,
        )
        self.since = None
        self.failures = 0

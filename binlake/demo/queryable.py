"""How long committed changes took to become visible through the SQL endpoint.

While the workload runs, `QueryableWatch` asks the endpoint, over ClickHouse's HTTP protocol as a
dashboard would, for every order's ``id`` and ``updated_at`` twice a second. A change to
``shop.orders`` counts as queryable at the first poll that shows its key with an ``updated_at`` at
least the change's; its delay is that poll's start minus the change's commit time, so it is
overstated by at most one poll interval plus the poll's own duration. A change whose order was
deleted before it was ever seen cannot be timed and is left out, as in commit-to-gold.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import httpx

from binlake.demo.workload import CommittedChange

ORDERS_VIEW = "lake.shop__orders"
# Microseconds since the epoch: no date parsing on either side, no time zone ambiguity.
_POLL_SQL = (
    f"SELECT id, toUnixTimestamp64Micro(toDateTime64(updated_at, 6, 'UTC')) FROM {ORDERS_VIEW} "
    "FORMAT JSONCompact"
)


def _micros(moment: datetime) -> int:
    """`updated_at` of a change, naive UTC, as microseconds since the epoch."""
    return round(moment.replace(tzinfo=UTC).timestamp() * 1_000_000)


class QueryableWatch:
    """Polls the endpoint in a background thread; `delays` matches the polls with the changes."""

    def __init__(
        self,
        url: str,
        user: str,
        password: str,
        *,
        interval_s: float = 0.5,
        timeout_s: float = 5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = httpx.Client(
            base_url=url, auth=(user, password), timeout=timeout_s, transport=transport
        )
        self._interval_s = interval_s
        self._first_seen: dict[tuple[int, int], float] = {}  # (id, updated_at µs) -> poll start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queryable-watch", daemon=True)
        self.polls = 0
        self.failed_polls = 0
        self.last_error = ""

    def __enter__(self) -> QueryableWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.time()
            try:
                response = self._client.post("/", content=_POLL_SQL)
                response.raise_for_status()
                rows = response.json()["data"]
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                # The view appears only once silver has its first commit: until then, and while
                # the endpoint restarts, a poll fails and the next one tries again.
                self.failed_polls += 1
                self.last_error = str(exc)[:200]
            else:
                self.polls += 1
                for key, micros in rows:
                    self._first_seen.setdefault((int(key), int(micros)), started)
            self._stop.wait(max(0.0, self._interval_s - (time.time() - started)))

    def delays(self, changes: Iterable[CommittedChange]) -> list[float]:
        """Seconds from commit to the first poll showing each `shop.orders` change (or a later
        version of its row)."""
        seen_by_key: dict[int, list[tuple[int, float]]] = {}
        for (key, micros), seen_at in self._first_seen.items():
            seen_by_key.setdefault(key, []).append((micros, seen_at))
        delays = []
        for change in changes:
            if not change.table.endswith(".orders"):
                continue
            wanted = _micros(change.updated_at)
            # A version at least as new as the change exists only once the change committed.
            sightings = [
                seen_at for micros, seen_at in seen_by_key.get(change.key, []) if micros >= wanted
            ]
            if sightings:
                delays.append(max(0.0, min(sightings) - change.committed_at))
        return delays

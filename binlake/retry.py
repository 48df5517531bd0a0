"""Retrying with exponential backoff: the one retry loop every binlake component uses.

What is merely unavailable (the lake, a schema registry, the dead-letter topic, a Kafka Connect
worker that is rebalancing, a group coordinator still loading) is retried, never skipped. A
`Backoff` says how long to wait between attempts and when to give up; `retry_with_backoff` runs a
blocking call under it, `retry_with_backoff_async` an asyncio one (which may also be abandoned
between attempts, e.g. when a Kafka partition is revoked meanwhile). The first attempt costs a
function call and nothing more: the bronze worker runs every record through it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

RetryIf = Callable[[Exception], bool]
OnRetry = Callable[[Exception], None]


class RetryAbandonedError(Exception):
    """`retry_with_backoff_async` stopped because `abandon()` said so; the last error is the
    cause."""


def retry_any(exc: Exception) -> bool:
    """Retry whatever failed."""
    return True


@dataclass(frozen=True)
class Backoff:
    """Wait `first` seconds after the first failure, `factor` times longer after each next one,
    never longer than `longest`. Give up (raise the last error) once `give_up_after` seconds
    have passed since the first attempt or `max_attempts` attempts failed; None: never."""

    first: float
    longest: float
    factor: float = 2.0
    give_up_after: float | None = None
    max_attempts: int | None = None

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failed attempt in a row."""
        return min(self.first * self.factor ** (failures - 1), self.longest)

    def exhausted(self, failures: int, elapsed: float) -> bool:
        """Whether no attempt follows the `failures`-th failure, `elapsed` seconds in."""
        if self.max_attempts is not None and failures >= self.max_attempts:
            return True
        return self.give_up_after is not None and elapsed >= self.give_up_after


class _Episode:
    """The failures of one retried call, from its first failure on."""

    def __init__(
        self, backoff: Backoff, retry_if: RetryIf, on_retry: OnRetry | None, started: float
    ):
        self.backoff = backoff
        self.retry_if = retry_if
        self.on_retry = on_retry
        self.started = started
        self.failures = 0

    def delay_after(self, exc: Exception, now: float) -> float | None:
        """How long to wait before the next attempt after `exc`; None: give up, re-raise it."""
        self.failures += 1
        if not self.retry_if(exc) or self.backoff.exhausted(self.failures, now - self.started):
            return None
        if self.on_retry is not None:
            self.on_retry(exc)
        return self.backoff.delay(self.failures)


def retry_with_backoff(
    attempt: Callable[[], T],
    backoff: Backoff,
    *,
    retry_if: RetryIf = retry_any,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`attempt()`, called again after each failure `retry_if` accepts, waiting as `backoff`
    says; `on_retry(exc)` is told of each failure that is retried. Raises the first error not
    retried, or the last one when `backoff` gives up."""
    started = clock()
    episode: _Episode | None = None
    while True:
        try:
            return attempt()
        except Exception as exc:
            episode = episode or _Episode(backoff, retry_if, on_retry, started)
            delay = episode.delay_after(exc, clock())
            if delay is None:
                raise
        sleep(delay)


async def retry_with_backoff_async(
    attempt: Callable[[], Awaitable[T] | T],
    backoff: Backoff,
    *,
    retry_if: RetryIf = retry_any,
    on_retry: OnRetry | None = None,
    abandon: Callable[[], bool] | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`retry_with_backoff` for asyncio: `attempt()` may return an awaitable or a value. After
    each wait, `abandon()` is asked whether to try again at all: if it says no, raises
    `RetryAbandonedError` from the last error."""
    started = clock()
    episode: _Episode | None = None
    while True:
        try:
            result = attempt()
            if inspect.isawaitable(result):
                result = await result
            return result  # type: ignore[return-value]
        except Exception as exc:
            episode = episode or _Episode(backoff, retry_if, on_retry, started)
            delay = episode.delay_after(exc, clock())
            if delay is None:
                raise
            last = exc
        await sleep(delay)
        if abandon is not None and abandon():
            raise RetryAbandonedError(str(last)) from last

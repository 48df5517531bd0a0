"""retry_with_backoff / retry_with_backoff_async: waits, giving up, abandoning."""

from __future__ import annotations

import asyncio

import pytest

from binlake.retry import (
    Backoff,
    RetryAbandonedError,
    retry_with_backoff,
    retry_with_backoff_async,
)


class Flaky:
    """Fails `failures` times with `error`, then returns "done"."""

    def __init__(self, failures: int, error: Exception | None = None):
        self.left = failures
        self.error = error or ConnectionError("down")
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.left:
            self.left -= 1
            raise self.error
        return "done"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_the_delays_grow_exponentially_up_to_the_longest():
    backoff = Backoff(first=0.1, longest=1.0)
    assert [backoff.delay(n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_a_call_that_works_is_called_once_without_waiting():
    clock = Clock()
    call = Flaky(0)
    assert retry_with_backoff(call, Backoff(0.1, 1.0), sleep=clock.sleep, clock=clock) == "done"
    assert call.calls == 1 and clock.sleeps == []


def test_failures_are_retried_and_reported_until_the_call_works():
    clock = Clock()
    call = Flaky(3)
    seen: list[Exception] = []
    result = retry_with_backoff(
        call, Backoff(0.2, 2.0), on_retry=seen.append, sleep=clock.sleep, clock=clock
    )
    assert result == "done" and call.calls == 4
    assert clock.sleeps == pytest.approx([0.2, 0.4, 0.8])
    assert seen == [call.error] * 3


def test_an_error_retry_if_refuses_is_raised_at_once():
    clock = Clock()
    call = Flaky(1, ValueError("bad"))
    with pytest.raises(ValueError, match="bad"):
        retry_with_backoff(
            call,
            Backoff(0.1, 1.0),
            retry_if=lambda exc: isinstance(exc, ConnectionError),
            sleep=clock.sleep,
            clock=clock,
        )
    assert call.calls == 1 and clock.sleeps == []


def test_gives_up_with_the_last_error_after_max_attempts():
    clock = Clock()
    call = Flaky(10)
    with pytest.raises(ConnectionError):
        retry_with_backoff(call, Backoff(0.1, 1.0, max_attempts=4), sleep=clock.sleep, clock=clock)
    assert call.calls == 4 and len(clock.sleeps) == 3


def test_gives_up_once_the_time_is_up():
    clock = Clock()
    call = Flaky(10)
    with pytest.raises(ConnectionError):
        retry_with_backoff(
            call, Backoff(1.0, 1.0, give_up_after=3.0), sleep=clock.sleep, clock=clock
        )
    assert call.calls == 4  # failures at 0, 1, 2 are retried; the one at 3 s is not
    with pytest.raises(ConnectionError):
        retry_with_backoff(Flaky(1), Backoff(1.0, 1.0, give_up_after=0), sleep=clock.sleep)


def test_async_retries_coroutines_and_plain_calls():
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    flaky = Flaky(2)

    async def attempt() -> str:
        return flaky()

    assert asyncio.run(retry_with_backoff_async(attempt, Backoff(0.1, 5.0), sleep=sleep)) == "done"
    assert sleeps == pytest.approx([0.1, 0.2])
    assert asyncio.run(retry_with_backoff_async(Flaky(1), Backoff(0.1, 5.0), sleep=sleep)) == "done"


def test_async_is_abandoned_after_a_wait_when_abandon_says_so():
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    call = Flaky(10)
    with pytest.raises(RetryAbandonedError) as info:
        asyncio.run(
            retry_with_backoff_async(
                call, Backoff(0.1, 5.0), sleep=sleep, abandon=lambda: len(sleeps) == 2
            )
        )
    assert info.value.__cause__ is call.error
    assert call.calls == 2 and len(sleeps) == 2

"""QueryableWatch: polls matched with committed changes (the endpoint is a test double here;
tests/integration runs the demo against the real endpoint)."""

import time
from datetime import UTC, datetime, timedelta

import httpx

from binlake.demo.queryable import QueryableWatch
from binlake.demo.workload import CommittedChange


def _micros(moment: datetime) -> int:
    return round(moment.replace(tzinfo=UTC).timestamp() * 1_000_000)


def test_a_change_is_timed_from_commit_to_the_first_poll_showing_it_or_a_newer_version() -> None:
    base = datetime(2026, 12, 7, 12, 0, 0)
    first, second = base, base + timedelta(seconds=1)
    visible: list[list[int]] = []
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"data": list(visible)})

    committed = time.time()
    changes = [
        CommittedChange("shop.orders", 1, first, committed),
        CommittedChange("shop.orders", 2, first, committed),  # never seen: not timed
        CommittedChange("shop.customers", 1, first, committed),  # not an order: not timed
    ]
    with QueryableWatch(
        "http://endpoint", "dashboard", "pw", interval_s=0.01, transport=httpx.MockTransport(answer)
    ) as watch:
        time.sleep(0.1)
        # Key 1 shows up only in its newer version: the first change counts as seen with it.
        visible.append([1, _micros(second)])
        deadline = time.time() + 5
        while watch.polls < 20 and time.time() < deadline:
            time.sleep(0.01)
        seen_from = time.time()
    delays = watch.delays(changes)
    assert len(delays) == 1
    assert 0.1 <= delays[0] <= seen_from - committed
    assert requests[0].headers["authorization"].startswith("Basic ")
    assert b"lake.shop__orders" in requests[0].content


def test_failed_polls_are_counted_and_do_not_stop_the_watch() -> None:
    calls = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls < 3:
            return httpx.Response(404, text="Code: 60. DB::Exception: Unknown table")
        return httpx.Response(200, json={"data": []})

    with QueryableWatch(
        "http://endpoint", "u", "p", interval_s=0.01, transport=httpx.MockTransport(answer)
    ) as watch:
        deadline = time.time() + 5
        while watch.polls < 2 and time.time() < deadline:
            time.sleep(0.01)
    assert watch.failed_polls == 2
    assert "404" in watch.last_error
    assert watch.polls >= 2

"""The stall watch's decisions, on a fake clock: when a partition counts as stalled, and when a
seek is not enough and the worker must restart (streams/stall_watch.py)."""

from __future__ import annotations

from itertools import pairwise

from streams.stall_watch import STALL_SECONDS, PartitionProgress, Remedy, StallWatch
from tests.support.partition_writer import FakeClock as Clock

TP = ("binlake.shop.orders", 0)


def _progress(
    delivered: int | None,
    last_stable: int,
    *,
    position: int | None = None,
    committed: int | None = None,
) -> dict:
    position = last_stable if position is None else position
    return {TP: PartitionProgress(delivered, committed, position, last_stable)}


def test_a_trailing_commit_marker_is_not_a_waiting_record() -> None:
    # Offsets 0..9 delivered, 10 is the transaction's commit marker: LSO 11.
    assert PartitionProgress(9, 10, 11, 11).waiting() == 0
    assert PartitionProgress(9, 10, 11, 14).waiting() == 3
    # Nothing delivered since the last seek: counted from the committed offset.
    assert PartitionProgress(None, 5, 5, 9).waiting() == 3
    assert PartitionProgress(None, None, None, 1).waiting() == 0


def test_records_waiting_without_a_delivery_for_the_stall_time_get_a_seek() -> None:
    clock = Clock()
    watch = StallWatch(clock)
    assert watch.check(_progress(1, 5)) == (Remedy.NONE, [])
    clock.now += STALL_SECONDS - 1
    assert watch.check(_progress(1, 5)) == (Remedy.NONE, [])
    clock.now += 1
    assert watch.check(_progress(1, 5)) == (Remedy.SEEK, [TP])


def test_deliveries_keep_a_busy_partition_from_counting_as_stalled() -> None:
    clock = Clock()
    watch = StallWatch(clock)
    for delivered in range(0, 100, 10):
        assert watch.check(_progress(delivered, 1000)) == (Remedy.NONE, [])
        clock.now += STALL_SECONDS - 1


def test_an_idle_partition_is_never_stalled() -> None:
    clock = Clock()
    watch = StallWatch(clock)
    for _ in range(10):
        assert watch.check(_progress(9, 11)) == (Remedy.NONE, [])
        clock.now += STALL_SECONDS * 10


def test_a_fetcher_that_does_not_move_after_a_seek_restarts_the_worker() -> None:
    clock = Clock()
    watch = StallWatch(clock)
    watch.check(_progress(1, 9, position=2, committed=2))
    clock.now += STALL_SECONDS
    assert watch.check(_progress(1, 9, position=2, committed=2)) == (Remedy.SEEK, [TP])
    # After the seek Faust counts the committed offset as read; the position is back at 2.
    watch.seeked(_progress(2, 9, position=2, committed=2))
    clock.now += STALL_SECONDS  # the second seek's patience is twice as long
    assert watch.check(_progress(2, 9, position=2, committed=2)) == (Remedy.NONE, [])
    clock.now += STALL_SECONDS
    assert watch.check(_progress(2, 9, position=2, committed=2)) == (Remedy.RESTART, [TP])


def test_a_seek_that_brings_deliveries_starts_the_backoff_again() -> None:
    clock = Clock()
    watch = StallWatch(clock)
    watch.check(_progress(1, 9))
    clock.now += STALL_SECONDS
    assert watch.check(_progress(1, 9))[0] is Remedy.SEEK
    watch.seeked(_progress(2, 9, position=2))
    assert watch.check(_progress(8, 9)) == (Remedy.NONE, [])  # delivered: healed
    watch.check(_progress(8, 20))
    clock.now += STALL_SECONDS
    assert watch.check(_progress(8, 20)) == (Remedy.SEEK, [TP])


def test_an_aborted_tail_costs_seeks_further_and_further_apart_never_a_restart() -> None:
    # Offsets 10..19 are an aborted transaction: the position reaches the LSO after each seek
    # but nothing is delivered, for ever.
    clock = Clock()
    watch = StallWatch(clock)
    watch.check(_progress(9, 21, position=21))
    seeks_at = []
    for _ in range(200):
        clock.now += STALL_SECONDS / 2
        remedy, _ = watch.check(_progress(9, 21, position=21))
        assert remedy is not Remedy.RESTART
        if remedy is Remedy.SEEK:
            seeks_at.append(clock.now)
            watch.seeked(_progress(9, 21, position=21))
    gaps = [later - earlier for earlier, later in pairwise(seeks_at)]
    assert len(seeks_at) >= 3 and gaps == sorted(gaps) and gaps[-1] > gaps[0]


def test_a_revoked_partition_is_forgotten() -> None:
    clock = Clock()
    watch = StallWatch(clock)
    watch.check(_progress(1, 9))
    clock.now += STALL_SECONDS
    assert watch.check({}) == (Remedy.NONE, [])
    assert watch.check(_progress(1, 9)) == (Remedy.NONE, [])  # its clock starts again

"""Consumed offset ranges of a silver table (unit level)."""

import polars as pl
import pytest

from binlake.bronze.layout import OFFSET, PARTITION, TOPIC
from binlake.errors import FinalError
from binlake.silver.consumed import ConsumedOffsets, merge_ranges


def offsets(*triples: tuple[str, int, int]) -> pl.DataFrame:
    return pl.DataFrame(
        [{TOPIC: t, PARTITION: p, OFFSET: o, "v": i} for i, (t, p, o) in enumerate(triples)]
    )


def test_merge_ranges_joins_overlapping_and_adjacent():
    assert merge_ranges([(5, 9), (0, 3), (4, 4), (20, 21), (8, 12)]) == [(0, 12), (20, 21)]
    with pytest.raises(ValueError, match="empty"):
        merge_ranges([(3, 2)])


def test_add_offsets_records_runs_per_partition():
    consumed = ConsumedOffsets()
    consumed.add_offsets(offsets(("a", 0, 0), ("a", 0, 1), ("a", 0, 2), ("a", 0, 7), ("b", 1, 3)))
    assert consumed.ranges == {("a", 0): [(0, 2), (7, 7)], ("b", 1): [(3, 3)]}
    assert consumed.covers(("a", 0), 1, 2)
    assert not consumed.covers(("a", 0), 2, 7)  # 3..6 were never merged
    assert not consumed.covers(("b", 0), 3, 3)


def test_unconsumed_keeps_only_new_offsets():
    consumed = ConsumedOffsets({("a", 0): [(0, 4)]})
    frame = offsets(("a", 0, 3), ("a", 0, 5), ("a", 1, 3), ("b", 0, 0))
    assert consumed.unconsumed(frame)["v"].to_list() == [1, 2, 3]


def test_json_round_trip_and_bad_metadata():
    consumed = ConsumedOffsets({("a", 0): [(0, 4), (9, 9)], ("b", 2): [(1, 1)]}, 1234)
    assert ConsumedOffsets.from_json(consumed.to_json()) == consumed
    with pytest.raises(FinalError, match="unreadable"):
        ConsumedOffsets.from_json('{"version": 1}')
    with pytest.raises(FinalError, match="version"):
        ConsumedOffsets.from_json('{"version": 99, "ranges": [], "manifest_cursor": 0}')

"""The arithmetic of consumer lag: gaps, transaction markers, no commit, no topic, the read cap;
and which time a record's commit time is."""

from __future__ import annotations

from types import SimpleNamespace

from binlake.bronze.consumer_lag import (
    PartitionFacts,
    debezium_commit_time,
    partition_lag,
    table_lag,
)
from binlake.errors import DecodeError

TOPIC = "binlake.shop.orders"


def lag(facts: list[PartitionFacts] | None):
    return table_lag("shop.orders", TOPIC, "binlake-bronze", facts)


def test_committed_on_the_commit_marker_is_caught_up_though_the_high_watermark_is_larger():
    # records 0..2, commit marker 3: the writer committed 3 (after its last record), HW is 4.
    facts = PartitionFacts(0, committed=3, log_start=0, stable_end=4, high_watermark=4)
    table = lag([facts])
    assert (table.state, table.records, table.exact, table.seconds) == ("ok", 0, True, 0.0)
    assert table.records_text() == "0" and table.seconds_text() == "0 s"


def test_records_behind_are_the_records_read_not_the_offset_distance():
    # committed 3 (a marker); 4,5 aborted, 6 their abort marker, 7 a record, 8 its marker.
    facts = PartitionFacts(
        0,
        committed=3,
        log_start=0,
        stable_end=9,
        high_watermark=9,
        read_records=1,
        read_to_end=True,
        oldest_pending_ms=1_000_000,
        newest_ms=1_000_000,
    )
    table = lag([facts])
    assert (table.records, table.exact, table.at_most) == (1, True, 6)
    assert table.seconds == 0.0  # the one record behind is the newest commit
    [partition] = table.partitions
    assert (partition.committed, partition.stable_end, partition.high_watermark) == (3, 9, 9)


def test_only_markers_and_aborted_records_after_the_commit_is_no_lag():
    facts = PartitionFacts(0, 3, 0, 7, 7, read_records=0, read_to_end=True)
    assert (lag([facts]).records, lag([facts]).seconds) == (0, 0.0)


def test_an_open_transaction_is_not_lag_yet():
    # Everything up to the LSO is in bronze; an open transaction holds offsets 10.. (HW 14).
    facts = PartitionFacts(0, committed=10, log_start=0, stable_end=10, high_watermark=14)
    assert (lag([facts]).records, lag([facts]).seconds) == (0, 0.0)


def test_seconds_are_newest_commit_minus_oldest_commit_not_in_bronze_over_partitions():
    p0 = PartitionFacts(0, 10, 0, 20, 20, 5, True, oldest_pending_ms=100_000, newest_ms=160_000)
    p1 = PartitionFacts(1, 4, 0, 9, 9, 2, True, oldest_pending_ms=130_000, newest_ms=190_500)
    p2 = PartitionFacts(2, 7, 0, 7, 7)  # caught up: its newest commit is not known, not needed
    table = lag([p2, p0, p1])
    assert (table.records, table.exact, table.at_most) == (7, True, 15)
    assert (table.oldest_pending_ms, table.newest_ms) == (100_000, 190_500)
    assert table.seconds == 90.5
    assert [p.partition for p in table.partitions] == [0, 1, 2]


def test_beyond_the_read_cap_records_are_a_lower_bound_and_the_distance_an_upper_one():
    facts = PartitionFacts(0, 100, 0, 50_100, 50_101, 10_000, False, 1_000, 61_000)
    table = lag([facts])
    assert (table.records, table.exact, table.at_most) == (10_000, False, 50_000)
    assert table.records_text() == ">= 10000"
    assert table.seconds == 60.0


def test_records_deleted_by_retention_are_lost_not_behind():
    facts = PartitionFacts(0, committed=5, log_start=40, stable_end=40, high_watermark=40)
    assert lag([facts]).records == 0


def test_no_commit_and_no_topic_are_reported_as_such_not_as_zero():
    no_commit = lag([PartitionFacts(0, None, 0, 12, 12), PartitionFacts(1, 3, 0, 3, 3)])
    assert (no_commit.state, no_commit.records, no_commit.seconds) == ("no commit", None, None)
    assert no_commit.records_text() == "no commit" and no_commit.seconds_text() == "no commit"
    assert partition_lag(PartitionFacts(0, None, 0, 12, 12)).records is None
    no_topic = lag(None)
    assert (no_topic.state, no_topic.records, no_topic.seconds) == ("no topic", None, None)
    assert no_topic.records_text() == "no topic"


def test_unknown_commit_time_leaves_seconds_unknown_not_zero():
    facts = PartitionFacts(0, 0, 0, 3, 3, 2, True, oldest_pending_ms=None, newest_ms=None)
    table = lag([facts])
    assert (table.records, table.seconds, table.seconds_text()) == (2, None, "?")


def test_commit_time_is_source_ts_ms_else_the_record_timestamp():
    def decode(key, value, *, topic, topic_prefix):
        assert (topic, topic_prefix) == (TOPIC, "binlake")
        if value == b"bad":
            raise DecodeError("not a change event")
        ts = int(value)
        return SimpleNamespace(source=SimpleNamespace(ts_ms=ts) if ts else None)

    commit_time = debezium_commit_time(decode, "binlake")
    assert commit_time(TOPIC, b"k", b"1700", 9999) == 1700
    assert commit_time(TOPIC, b"k", b"0", 9999) == 9999  # decoded, no source block
    assert commit_time(TOPIC, b"k", None, 8888) == 8888  # tombstone
    assert commit_time(TOPIC, b"k", b"bad", 7777) == 7777

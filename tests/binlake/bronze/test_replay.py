"""The replay plan: argument parsing, time -> offset, and what bronze holds; Kafka faked (the
real broker is exercised by tests/integration/test_replay_real_broker.py)."""

from __future__ import annotations

import pytest

from binlake.bronze.coverage import PartitionFiles
from binlake.bronze.manifest import ManifestEntry
from binlake.bronze.replay import (
    apply_replay,
    parse_partition_offsets,
    parse_time,
    plan_replay,
    start_of_lost_range,
)
from binlake.consumer_groups import GroupMembers
from binlake.errors import GroupInUseError, ReplayError
from tests.support.replay import TOPIC, FakeKafka, entry

NOW_MS = 1_795_255_200_000  # 2026-11-21T10:00:00Z


# -- parsing ------------------------------------------------------------------------------------


def test_partition_offsets_parse() -> None:
    assert parse_partition_offsets("0:1200") == {0: 1200}
    assert parse_partition_offsets("0:5, 2:0") == {0: 5, 2: 0}


@pytest.mark.parametrize("text", ["12", "0:", ":4", "a:1", "0:-1", "0:1,,1:2", "0:1:2"])
def test_partition_offsets_that_are_not_p_colon_o_are_refused(text: str) -> None:
    with pytest.raises(ReplayError, match="is not P:O"):
        parse_partition_offsets(text)


def test_a_partition_named_twice_is_refused() -> None:
    with pytest.raises(ReplayError, match="partition 0 twice"):
        parse_partition_offsets("0:1,0:2")


def test_times_parse_as_utc_unless_they_say_otherwise() -> None:
    assert parse_time("2026-11-21T10:00:00Z", now_ms=NOW_MS) == NOW_MS
    assert parse_time("2026-11-21 09:00", now_ms=NOW_MS) == NOW_MS - 3_600_000
    assert parse_time("2026-11-21T10:00:00+02:00", now_ms=NOW_MS) == NOW_MS - 7_200_000
    assert parse_time(str(NOW_MS - 5), now_ms=NOW_MS) == NOW_MS - 5


def test_a_time_in_the_future_or_not_a_time_is_refused() -> None:
    with pytest.raises(ReplayError, match="in the future"):
        parse_time("2026-11-21T10:00:01Z", now_ms=NOW_MS)
    with pytest.raises(ReplayError, match="not an ISO 8601 time"):
        parse_time("yesterday", now_ms=NOW_MS)


def test_a_group_with_members_or_rebalancing_is_in_use() -> None:
    assert not GroupMembers("g", "EMPTY", ()).active
    assert GroupMembers("g", "STABLE", ()).active  # a stable group listed without its members
    busy = GroupMembers("g", "STABLE", ("m-1 (faust@127.0.0.1)",))
    assert busy.active and "'g'" in busy.refusal() and "m-1 (faust@127.0.0.1)" in busy.refusal()


# -- what bronze holds -------------------------------------------------------------------------


def test_a_target_inside_a_lost_file_moves_back_to_its_first_offset() -> None:
    files = PartitionFiles(TOPIC, 0)
    files.add([entry(0, 9), entry(10, 19), entry(20, 29), entry(30, 39)])
    lost = {entry(10, 19).path, entry(30, 39).path}

    def intact(e: ManifestEntry) -> bool:
        return e.path not in lost

    assert start_of_lost_range(files, 15, intact) == (10, (entry(10, 19).path, entry(30, 39).path))
    assert start_of_lost_range(files, 5, intact) == (5, (entry(10, 19).path, entry(30, 39).path))
    assert start_of_lost_range(files, 25, intact) == (25, (entry(30, 39).path,))
    assert start_of_lost_range(files, 40, intact) == (40, ())


def test_the_last_entry_of_a_path_describes_the_file() -> None:
    files = PartitionFiles(TOPIC, 0, from_offset=10)
    rewritten = ManifestEntry(**{**entry(10, 19).__dict__, "last_offset": 14, "rows": 5})
    files.add([entry(0, 9), entry(10, 19), entry(10, 19, partition=1), rewritten, entry(15, 19)])
    assert [(e.first_offset, e.last_offset) for e in files.files()] == [(10, 14), (15, 19)]
    assert files.file_at(14) == rewritten and files.file_at(20) is None
    assert files.file_at(9) is None  # below from_offset: not kept


# -- the plan, against a fake Kafka ---------------------------------------------------------------


def test_plan_by_time_moves_back_to_a_lost_file_and_lists_it(lake) -> None:
    settings, storage = lake
    storage.filesystem.delete_file(storage.full_path(entry(10, 19).path))
    plan = plan_replay(settings, "shop.orders", from_time_ms=NOW_MS, kafka=FakeKafka())
    assert plan.group == "binlake-bronze" and plan.bronze_writer and plan.topic == TOPIC
    [p0, p1] = plan.partitions
    assert (p0.current, p0.requested, p0.target) == (40, 12, 10)
    assert p0.rewritten_files == (entry(10, 19).path,)
    assert "moved back from 12" in p0.note
    assert (p1.current, p1.target, p1.rewritten_files) == (None, 3, ())


def test_plan_by_offsets_touches_only_the_partitions_named(lake) -> None:
    settings, _ = lake
    plan = plan_replay(settings, "shop.orders", from_offsets={1: 2}, kafka=FakeKafka())
    assert plan.targets == {1: 2}


def test_bad_plans_name_what_is_wrong(lake) -> None:
    settings, _ = lake
    kafka = FakeKafka()
    with pytest.raises(ReplayError, match=r"unknown table 'shop.nope'"):
        plan_replay(settings, "shop.nope", from_offsets={0: 1}, kafka=kafka)
    with pytest.raises(ReplayError, match=r"partition\(s\) \[5\] are not in topic"):
        plan_replay(settings, "shop.orders", from_offsets={5: 1}, kafka=kafka)
    with pytest.raises(ReplayError, match=r"past the end of binlake.shop.orders\[1\]"):
        plan_replay(settings, "shop.orders", from_offsets={1: 8}, group="dash", kafka=kafka)
    with pytest.raises(ReplayError, match=r"would leave offsets 40..44 out of bronze"):
        kafka.ends[0] = 50
        plan_replay(settings, "shop.orders", from_offsets={0: 45}, kafka=kafka)
    with pytest.raises(ReplayError, match="exactly one of"):
        plan_replay(settings, "shop.orders", kafka=kafka)


def test_moving_the_bronze_writer_past_only_markers_is_not_moving_it_forward(lake) -> None:
    # Bronze holds 0..39 and the writer committed 40; 40 is a commit marker, 41, 42 aborted
    # records and 43 their abort marker: the end of the topic, 44, skips no record.
    settings, _ = lake
    kafka = FakeKafka(ends={0: 44, 1: 7}, not_records={0: {40, 41, 42, 43}})
    plan = plan_replay(settings, "shop.orders", from_offsets={0: 44}, kafka=kafka)
    assert plan.targets == {0: 44}
    kafka.not_records = {0: {40, 41}}  # 42 and 43 are records: moving there would skip them
    with pytest.raises(ReplayError, match=r"would leave offsets 40..43 out of bronze"):
        plan_replay(settings, "shop.orders", from_offsets={0: 44}, kafka=kafka)


def test_another_group_moves_as_asked_with_bronze_aside(lake) -> None:
    settings, storage = lake
    storage.filesystem.delete_file(storage.full_path(entry(10, 19).path))
    kafka = FakeKafka()
    plan = plan_replay(settings, "shop.orders", from_offsets={0: 15}, group="dash", kafka=kafka)
    assert not plan.bronze_writer and plan.targets == {0: 15}
    assert plan.partitions[0].rewritten_files == ()
    assert apply_replay(plan, settings, kafka=kafka) == {0: 15}
    assert kafka.resets == [{0: 15}]


def test_a_group_in_use_is_not_reset(lake) -> None:
    settings, _ = lake
    kafka = FakeKafka(state="STABLE")
    plan = plan_replay(settings, "shop.orders", from_offsets={0: 3}, kafka=kafka)
    with pytest.raises(GroupInUseError, match="'binlake-bronze' is in use"):
        apply_replay(plan, settings, kafka=kafka)
    assert kafka.resets == []


def test_a_compacted_file_replaces_the_files_it_supersedes_and_holds_only_its_runs() -> None:
    files = PartitionFiles(TOPIC, 0)
    compacted = ManifestEntry(
        **{
            **entry(0, 9).__dict__,
            "path": "bronze/shop.orders/compacted.parquet",
            "offset_ranges": [[0, 4], [8, 9]],
            "supersedes": [entry(0, 4).path, entry(8, 9).path],
        }
    )
    files.add([entry(0, 4), entry(5, 7), entry(8, 9), compacted])
    assert {e.path for e in files.files()} == {compacted.path, entry(5, 7).path}
    assert files.file_at(3) == compacted and files.file_at(9) == compacted
    assert files.file_at(6) == entry(5, 7)
    assert files.files_between(5, 8) == [compacted, entry(5, 7)]


def test_the_bronze_group_is_never_moved_past_the_end_of_bronze(lake) -> None:
    """Also when Kafka has forgotten the idle group's offsets; offsets Kafka itself deleted are
    not needed."""
    settings, _ = lake
    kafka = FakeKafka(committed_={0: None, 1: None}, ends={0: 50, 1: 7})
    with pytest.raises(ReplayError, match=r"would leave offsets 40..44 out of bronze"):
        plan_replay(settings, "shop.orders", from_offsets={0: 45}, kafka=kafka)
    kafka.starts[0] = 45  # 40..44 were deleted by the topic's retention
    assert plan_replay(settings, "shop.orders", from_offsets={0: 45}, kafka=kafka).targets == {
        0: 45
    }


def test_a_plan_made_before_the_group_moved_is_not_applied(lake) -> None:
    settings, _ = lake
    kafka = FakeKafka()
    plan = plan_replay(settings, "shop.orders", from_offsets={0: 30}, kafka=kafka)
    kafka.committed_[0] = 20  # another replay moved the group further back meanwhile
    with pytest.raises(ReplayError, match="moved since the plan"):
        apply_replay(plan, settings, kafka=kafka)
    assert kafka.resets == []

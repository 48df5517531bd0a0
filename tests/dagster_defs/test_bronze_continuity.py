"""The bronze offset continuity check: the pure range logic, the dead-letter listing, and the
check on a real temp lake (files and manifest written by the bronze worker itself)."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from binlake.bronze.continuity import (
    Gap,
    OffsetRange,
    Overlap,
    dead_letter_offsets,
    offset_continuity,
)
from binlake.bronze.manifest import ManifestEntry
from binlake.settings import Settings
from binlake.storage import LakeStorage
from compactor.expiry import retention_entry
from dagster_defs.bronze.checks import SCHEMA_CHECK_CONDITION
from dagster_defs.bronze.continuity import (
    CONTINUITY_CHECK,
    build_continuity_check,
    check_offset_continuity,
)
from dagster_defs.definitions import build_definitions
from dagster_defs.keys import bronze_key
from dagster_defs.resources import BronzeLake
from streams.bronze_worker import BronzeWorker, KafkaRecord
from streams.dead_letter import DeadLetter, DeadLetters, dead_letter_path
from streams.flush_policy import FlushPolicy
from tests.support.dagster_runs import evaluate_check
from tests.support.debezium import DebeziumTable
from tests.support.manifest import manifest_entry

TOPIC = "binlake.shop.orders"
TABLE = "shop.orders"


def entry(first: int, last: int, *, partition: int = 0, path: str | None = None) -> ManifestEntry:
    return manifest_entry(
        first,
        last,
        table=TABLE,
        topic=TOPIC,
        partition=partition,
        path=path or f"bronze/{TABLE}/{TOPIC}+{partition}+{first:020d}.parquet",
        partition_key="2024-06-01-10:00",
    )


def metadata(result: dg.AssetCheckResult) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in result.metadata.items()}


# -- the range logic ------------------------------------------------------------------------------


def test_contiguous_files_cover_their_partition():
    [p] = offset_continuity([entry(0, 4), entry(5, 5), entry(6, 20)])
    assert p.ok and (p.first_offset, p.last_offset, p.files) == (0, 20, 3)
    assert p.gaps == () and p.overlaps == ()


def test_manifest_order_does_not_matter_and_the_span_need_not_start_at_zero():
    [p] = offset_continuity([entry(110, 119), entry(100, 109)])  # retention removed 0..99
    assert p.ok and (p.first_offset, p.last_offset) == (100, 119)


def test_a_gap_is_named_by_its_offsets_and_the_files_around_it():
    a, b = entry(0, 4), entry(8, 9)
    [p] = offset_continuity([a, b])
    assert not p.ok
    assert p.gaps == (Gap(OffsetRange(5, 7), a.path, b.path),)
    assert p.missing_offsets == 3
    assert str(p.gaps[0]).startswith("offsets 5..7 (3) missing between ")


def test_an_overlap_is_named_by_its_offsets_and_both_files():
    a, b, c = entry(0, 4), entry(3, 6), entry(7, 7)
    [p] = offset_continuity([a, b, c])
    assert not p.ok and p.gaps == ()
    assert p.overlaps == (Overlap(OffsetRange(3, 4), a.path, b.path),)
    assert p.last_offset == 7


def test_a_file_inside_another_is_an_overlap_of_all_its_offsets():
    a, b = entry(0, 9), entry(2, 3)
    [p] = offset_continuity([a, b])
    assert p.overlaps == (Overlap(OffsetRange(2, 3), a.path, b.path),)
    assert (p.first_offset, p.last_offset) == (0, 9)


def test_a_path_listed_twice_is_one_file_and_the_later_entry_wins():
    # A retried flush rewrote the file under the same name; its second entry describes it.
    path = f"bronze/{TABLE}/{TOPIC}+0+{0:020d}.parquet"
    [p] = offset_continuity([entry(0, 9, path=path), entry(0, 4, path=path), entry(5, 9)])
    assert p.ok and p.files == 2
    # the other way round the later, longer entry covers the next file's offsets twice
    [p] = offset_continuity([entry(0, 4, path=path), entry(5, 9), entry(0, 9, path=path)])
    assert p.overlaps == (Overlap(OffsetRange(5, 9), path, entry(5, 9).path),)


def test_partitions_are_checked_separately():
    results = offset_continuity(
        [entry(0, 4), entry(0, 2, partition=1), entry(5, 9), entry(4, 6, partition=1)]
    )
    assert [(p.partition, p.ok) for p in results] == [(0, True), (1, False)]
    assert [str(g.offsets) for g in results[1].gaps] == ["3"]
    assert results[1].name == f"{TOPIC}[1]"


def test_dead_letters_fill_gaps_between_files_and_nothing_else():
    files = [entry(0, 4), entry(8, 9), entry(12, 12)]
    [p] = offset_continuity(files, dead_letters={(TOPIC, 0): {5, 6, 7, 10, 11, 3, 40}})
    assert p.ok
    assert [str(r) for r in p.dead_lettered] == ["5..7", "10..11"]
    # A dead letter in the middle of a gap leaves both sides of it missing.
    [p] = offset_continuity(files[:2], dead_letters={(TOPIC, 0): {6}})
    assert [str(g.offsets) for g in p.gaps] == ["5", "7"]
    # Another partition's dead letters explain nothing here.
    [p] = offset_continuity(files[:2], dead_letters={(TOPIC, 1): {5, 6, 7}})
    assert [str(g.offsets) for g in p.gaps] == ["5..7"]


def test_superseded_files_are_left_out():
    small = [entry(0, 4), entry(5, 9)]
    compacted = entry(0, 9, path=f"bronze/{TABLE}/compacted-0-9.parquet")
    [p] = offset_continuity([*small, compacted])
    assert not p.ok  # without knowing, the compacted file overlaps the small ones
    superseding = replace(compacted, supersedes=[e.path for e in small])
    [p] = offset_continuity([*small, superseding])
    assert p.ok and p.files == 1


def test_a_compacted_files_offset_runs_leave_room_for_other_hours():
    this_hour = [entry(0, 4), entry(10, 14)]
    next_hour = entry(5, 9)
    compacted = replace(
        entry(0, 14, path=f"bronze/{TABLE}/compacted-0-14.parquet"),
        offset_ranges=[[0, 4], [10, 14]],
        supersedes=[e.path for e in this_hour],
    )
    [p] = offset_continuity([*this_hour, next_hour, compacted])
    assert p.ok and p.files == 2 and (p.first_offset, p.last_offset) == (0, 14)


def test_offsets_expired_at_the_start_of_a_partition_are_no_gap():
    expired, kept = [entry(0, 4), entry(5, 9)], [entry(10, 14), entry(15, 19)]
    line = retention_entry((TABLE, TOPIC, 0), expired, datetime(2024, 7, 1, tzinfo=UTC))
    [p] = offset_continuity([*expired, *kept, line])
    assert p.ok and p.files == 2 and (p.first_offset, p.last_offset) == (10, 19)


def test_an_entry_with_first_above_last_is_reported():
    [p] = offset_continuity([entry(0, 4), entry(9, 5)])
    assert not p.ok and p.invalid and "first offset 9 > last offset 5" in p.invalid[0]


# -- the dead-letter area -------------------------------------------------------------------------


def test_dead_letter_offsets_come_from_the_file_names(tmp_path: Path):
    storage = LakeStorage.from_url(str(tmp_path / "lake"))
    assert dead_letter_offsets(storage, {TOPIC}) == {}  # no area yet
    letters = DeadLetters(storage)
    for topic, partition, offset in [(TOPIC, 0, 5), (TOPIC, 0, 7), (TOPIC, 2, 1), ("x/y", 0, 3)]:
        letters.write(DeadLetter(topic, partition, offset, b"k", b"v", "bad"))
    directory = os.path.dirname(storage.full_path(dead_letter_path(TOPIC, 0, 5)))
    Path(directory, f".{TOPIC}+0+{9:020d}.json.abc.tmp").write_bytes(b"")  # half-written
    Path(directory, "README").write_text("not a letter")
    assert dead_letter_offsets(storage, {TOPIC}) == {(TOPIC, 0): {5, 7}, (TOPIC, 2): {1}}
    assert dead_letter_offsets(storage, {"x/y"}) == {("x/y", 0): {3}}  # percent-encoded name


# -- the check on a real lake ---------------------------------------------------------------------


@pytest.fixture
def lake(settings: Settings) -> BronzeLake:
    return BronzeLake(storage_url=settings.lake_url)


def worker_lake(settings: Settings) -> tuple[BronzeWorker, LakeStorage]:
    storage = LakeStorage.from_url(settings.lake_url)
    worker = BronzeWorker(
        storage,
        topic_prefix="binlake",
        flush_policy=FlushPolicy(rows=1, seconds=5.0),
        clock=lambda: 0.0,
        wall_clock=lambda: 1.0,
    )
    return worker, storage


def handle(worker: BronzeWorker, offset: int, kv: tuple[bytes | None, bytes | None]) -> None:
    worker.handle(KafkaRecord(TOPIC, 0, offset, kv[0], kv[1], 1_717_236_000_000, token=offset))


def test_a_dead_letter_between_files_passes_and_a_lost_one_fails(settings, lake):
    orders = DebeziumTable()
    worker, storage = worker_lake(settings)
    handle(worker, 0, orders.change("c", 1))
    handle(worker, 1, (orders.key(2), b"\x00 not json"))  # dead-lettered, nothing buffered
    handle(worker, 2, orders.change("c", 3))
    handle(worker, 3, orders.change("c", 4))
    worker.close()

    result = check_offset_continuity(lake, TABLE)
    assert result.passed, result.description
    assert result.severity == dg.AssetCheckSeverity.ERROR
    meta = metadata(result)
    assert (meta["files"], meta["gaps"], meta["overlaps"]) == (3, 0, 0)
    assert meta["dead_lettered_offsets_between_files"] == 1
    assert meta["partitions"][f"{TOPIC}[0]"] == {
        "first_offset": 0,
        "last_offset": 3,
        "files": 3,
        "gaps": [],
        "overlaps": [],
        "dead_lettered_between_files": ["1"],
    }

    os.remove(storage.full_path(dead_letter_path(TOPIC, 0, 1)))
    result = check_offset_continuity(lake, TABLE)
    assert not result.passed
    meta = metadata(result)
    assert (meta["gaps"], meta["missing_offsets"]) == (1, 1)
    assert f"{TOPIC}[0] offsets 1 (1) missing between " in meta["gap_ranges"]
    assert "1 gap(s) and 0 overlap(s)" in (result.description or "")


def test_lists_are_capped_at_twenty(bronze, lake):
    for offset in range(0, 60, 2):  # 30 one-row files with a one-offset gap after each
        bronze.write(TABLE, [bronze.change("c", offset, id=offset, customer_id=1, status="n")])
    result = check_offset_continuity(lake, TABLE)
    meta = metadata(result)
    assert meta["gaps"] == 29 and not result.passed
    assert meta["gap_ranges"].count("\n- ") == 20 and meta["gap_ranges"].endswith("9 more")
    assert len(meta["partitions"][f"{TOPIC}[0]"]["gaps"]) == 20


def test_only_the_checked_tables_files_count(bronze, lake):
    bronze.write(TABLE, [bronze.change("c", 0, id=1, customer_id=1, status="n")])
    bronze.write(
        "shop.products", [bronze.change("c", 0, id=1, sku="a", name="A", price=Decimal(1))]
    )
    bronze.write(
        "shop.products", [bronze.change("c", 5, id=2, sku="b", name="B", price=Decimal(1))]
    )
    assert check_offset_continuity(lake, TABLE).passed
    assert not check_offset_continuity(lake, "shop.products").passed


def test_no_file_yet_passes(lake):
    result = check_offset_continuity(lake, TABLE)
    assert result.passed and result.description == f"no bronze file of {TABLE} yet"


def test_the_check_runs_in_dagster_on_the_bronze_asset(settings, bronze, resources):
    bronze.write(TABLE, [bronze.change("c", 0, id=1, customer_id=1, status="n")])
    bronze.write(TABLE, [bronze.change("c", 4, id=2, customer_id=1, status="n")])
    check_key = dg.AssetCheckKey(bronze_key(TABLE), CONTINUITY_CHECK)
    evaluation = evaluate_check(settings, resources(), check_key)
    assert evaluation.asset_check_key == check_key and not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert "offsets 1..3 (3) missing" in (evaluation.description or "")


def test_every_bronze_table_has_the_check_with_the_schema_checks_condition(settings):
    graph = build_definitions(settings).resolve_asset_graph()
    keys = {key for key in graph.asset_check_keys if key.name == CONTINUITY_CHECK}
    assert keys == {dg.AssetCheckKey(bronze_key(t), CONTINUITY_CHECK) for t in settings.tables}
    [spec] = build_continuity_check(TABLE).check_specs
    assert spec.automation_condition == SCHEMA_CHECK_CONDITION
    assert spec.blocking is False

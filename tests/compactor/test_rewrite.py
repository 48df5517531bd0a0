"""Compaction on real bronze files: fewer files, the same rows, one atomic swap, late changes."""

from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow.parquet as pq
import pytest

from binlake.bronze.continuity import offset_continuity
from binlake.bronze.layout import OFFSET
from binlake.bronze.manifest import Manifest
from binlake.settings import Settings
from binlake.storage import LakeStorage
from compactor import rewrite
from compactor.plan import compaction_groups
from compactor.rewrite import CompactionConflictError, compact_group
from compactor.run import run_compaction
from dagster_defs.resources import BronzeLake

TABLE = "shop.orders"
AFTER_THE_HOUR = datetime(2024, 6, 1, 12, tzinfo=UTC)  # bronze fixture files are in 10:00


def write_small_files(bronze, first_offset: int = 0, files: int = 3) -> None:
    c = bronze.change
    for n in range(files):
        offset = first_offset + 2 * n
        bronze.write(
            TABLE,
            [  # keys out of order across files: the compacted file is sorted by key
                c("c", offset, id=100 - offset, status="new"),
                c("u", offset + 1, id=100 - offset, status="paid"),
            ],
        )


def bronze_rows(settings: Settings) -> set[tuple]:
    return set(BronzeLake(storage_url=settings.lake_url).read_table(TABLE).frame.rows())


def test_small_files_become_one_sorted_file_with_the_same_rows(settings, bronze):
    write_small_files(bronze)
    before = bronze_rows(settings)
    storage = LakeStorage.from_url(settings.lake_url)
    manifest = Manifest(storage)

    report = run_compaction(settings, now=AFTER_THE_HOUR)

    assert report.summary()["files_replaced"] == 3 and report.summary()["failed"] == []
    [entry] = manifest.entries_for(TABLE)
    assert (entry.first_offset, entry.last_offset, entry.rows) == (0, 5, 6)
    assert entry.rotation_reason == "compaction" and len(entry.supersedes) == 3
    assert bronze_rows(settings) == before
    compacted = pl.read_parquet(storage.full_path(entry.path))
    assert compacted["id"].to_list() == sorted(compacted["id"].to_list())
    assert all(storage.exists(path) for path in entry.supersedes), (
        "kept for readers until retention"
    )
    [continuity] = offset_continuity(manifest.entries())
    assert continuity.ok and continuity.files == 1
    assert run_compaction(settings, now=AFTER_THE_HOUR).compacted == [], "nothing left to do"


def test_a_mismatch_aborts_the_swap(settings, bronze, monkeypatch):
    write_small_files(bronze)
    storage = LakeStorage.from_url(settings.lake_url)
    manifest_before = Manifest(storage).read_since(0)
    real = rewrite.to_parquet_bytes
    monkeypatch.setattr(rewrite, "to_parquet_bytes", lambda table: real(table.slice(1)))

    report = run_compaction(settings, now=AFTER_THE_HOUR)

    assert report.compacted == [] and "read back" in report.failed[0][1]
    assert Manifest(storage).read_since(0) == manifest_before
    hour_dir = storage.full_path(f"bronze/{TABLE}/date=2024-06-01/hour=10")
    assert len(list(pq.ParquetDataset(hour_dir).files)) == 3, "the compacted file was removed"


def test_a_late_change_lands_in_a_new_file_and_is_compacted_again(settings, bronze):
    write_small_files(bronze)
    run_compaction(settings, now=AFTER_THE_HOUR)
    write_small_files(bronze, first_offset=20, files=2)  # late: still hour 10, offsets later
    before = bronze_rows(settings)

    report = run_compaction(settings, now=AFTER_THE_HOUR)

    assert report.failed == []
    [entry] = Manifest(LakeStorage.from_url(settings.lake_url)).entries_for(TABLE)
    assert entry.offset_ranges == [[0, 5], [20, 23]]  # 6..19 went to other hours or nowhere
    assert entry.rows == 10 and bronze_rows(settings) == before


def test_replaced_files_are_deleted_after_the_retention_period(settings, bronze):
    write_small_files(bronze)
    report = run_compaction(settings, now=AFTER_THE_HOUR)
    [compacted] = report.compacted
    storage = LakeStorage.from_url(settings.lake_url)
    swapped_at = datetime.fromtimestamp(compacted.entry.written_at, tz=UTC)

    hours = settings.compactor.superseded_retention_hours
    assert run_compaction(settings, now=swapped_at + timedelta(hours=hours - 1)).deleted_files == 0
    later = run_compaction(settings, now=swapped_at + timedelta(hours=hours, seconds=1))
    assert later.deleted_files == 3 and later.deleted_bytes > 0
    assert not any(storage.exists(path) for path in compacted.entry.supersedes)
    assert set(BronzeLake(storage_url=settings.lake_url).read_table(TABLE).frame[OFFSET]) == set(
        range(6)
    )


def test_two_compactions_of_one_group_swap_once(settings, bronze):
    write_small_files(bronze)
    storage = LakeStorage.from_url(settings.lake_url)
    manifest = Manifest(storage)
    [group] = compaction_groups(manifest.entries(), AFTER_THE_HOUR, settings.compactor)
    compact_group(storage, manifest, group)
    with pytest.raises(CompactionConflictError, match="no longer live"):
        compact_group(storage, manifest, group)
    assert len(manifest.entries_for(TABLE)) == 1

"""Bronze retention: files past `compactor.bronze_retention_days` dropped through the manifest
(gone for readers at once), deleted after `superseded_retention_hours`, a prefix of offsets only."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from binlake.bronze.continuity import offset_continuity
from binlake.bronze.layout import OFFSET
from binlake.bronze.manifest import Manifest
from binlake.settings import CompactorSettings, Settings, load_settings
from binlake.silver.consumed import ConsumedOffsets
from binlake.storage import LakeStorage
from compactor.expiry import RETENTION_REASON, expiring_files
from compactor.plan import compaction_groups
from compactor.rewrite import CompactionConflictError, compact_group
from compactor.run import plan_expiry, run_compaction
from dagster_defs.resources import BronzeLake
from tests.support.lake import with_retention
from tests.support.manifest import file

TABLE = "shop.orders"
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# Two days after the fixture's hour (2024-06-01 10:00) ended, and half an hour more.
NOW = datetime(2024, 6, 3, 11, 30, tzinfo=UTC)


def write(bronze, offset: int, hours_after_base: int = 0):
    """One file of two changes, in the hour `hours_after_base` after the fixture's hour."""
    ts = bronze.base_ts_ms + hours_after_base * HOUR_MS
    c = bronze.change
    return bronze.write(
        TABLE,
        [
            c("c", offset, ts_ms=ts, id=offset, status="new"),
            c("u", offset + 1, ts_ms=ts, id=offset, status="paid"),
        ],
    )


def bronze_offsets(settings: Settings) -> list[int]:
    return sorted(BronzeLake(storage_url=settings.lake_url).read_table(TABLE).frame[OFFSET])


def test_files_past_retention_leave_bronze_at_once_and_their_files_later(settings, bronze):
    settings = with_retention(settings)
    old = [write(bronze, 0), write(bronze, 2)]  # hour 10:00 of 2024-06-01: ended 2.02 days ago
    new = write(bronze, 4, hours_after_base=24)  # a day later
    storage = LakeStorage.from_url(settings.lake_url)
    manifest = Manifest(storage)

    report = run_compaction(settings, now=NOW)

    [expiry] = report.expired
    assert [f.path for f in expiry.files] == [f.path for f in old]
    assert report.compacted == [], "expired first: nothing left to compact"
    summary = report.summary()
    assert (summary["files_expired"], summary["rows_expired"]) == (2, 4)
    assert summary["bytes_expired"] == sum(f.bytes for f in old)
    assert expiry.entry.rotation_reason == RETENTION_REASON and not expiry.entry.is_file
    assert (expiry.entry.first_offset, expiry.entry.last_offset) == (0, 3)
    assert manifest.entries_for(TABLE) == [new]
    assert bronze_offsets(settings) == [4, 5]
    [continuity] = offset_continuity(manifest.entries())
    assert continuity.ok and continuity.first_offset == 4
    assert all(storage.exists(f.path) for f in old), "kept for readers that listed them"
    assert plan_expiry(settings, now=NOW) == [] and run_compaction(settings, now=NOW).expired == []

    later = run_compaction(settings, now=NOW + timedelta(hours=1, seconds=1))
    assert later.deleted_files == 2 and later.expired == []
    assert not any(storage.exists(f.path) for f in old) and storage.exists(new.path)
    assert bronze_offsets(settings) == [4, 5]


def test_without_a_retention_bronze_is_kept_forever(settings, bronze):
    assert settings.compactor.bronze_retention_days is None
    write(bronze, 0)
    write(bronze, 2, hours_after_base=1)

    report = run_compaction(settings, now=NOW + timedelta(days=3650))

    assert report.expired == [] and report.summary()["files_expired"] == 0
    assert plan_expiry(settings, now=NOW + timedelta(days=3650)) == []
    assert bronze_offsets(settings) == [0, 1, 2, 3]
    assert all(e.is_file for e in Manifest(LakeStorage.from_url(settings.lake_url)).entries())


def test_a_late_change_in_an_old_hour_waits_for_the_offsets_below_it(settings, bronze):
    settings = with_retention(settings)
    write(bronze, 0)  # old hour
    kept = write(bronze, 2, hours_after_base=24)
    late = write(bronze, 4)  # old hour again, offsets above the kept file

    [expiry] = run_compaction(settings, now=NOW).expired

    assert [f.first_offset for f in expiry.files] == [0]
    assert bronze_offsets(settings) == [2, 3, 4, 5]
    [continuity] = offset_continuity(Manifest(LakeStorage.from_url(settings.lake_url)).entries())
    assert continuity.ok, "expiring the late file would leave a hole at 4..5"
    [expiry] = run_compaction(settings, now=NOW + timedelta(days=1)).expired
    assert expiry.entry.supersedes == [kept.path, late.path]


def test_a_file_written_recently_into_an_old_hour_is_kept_for_the_retention_period():
    # A bronze worker catching up after an outage: silver may not have merged the file yet.
    caught_up = replace(file(0, 4), written_at=(NOW - timedelta(hours=1)).timestamp())
    long_ago = file(5, 9)
    assert expiring_files([caught_up], NOW, 2.0) == {}
    assert expiring_files([long_ago], NOW, 2.0) != {}
    assert expiring_files([caught_up], NOW + timedelta(days=2), 2.0) != {}


def test_a_compaction_planned_before_an_expiry_does_not_swap(settings, bronze):
    settings = with_retention(settings)
    write(bronze, 0)
    write(bronze, 2)
    storage = LakeStorage.from_url(settings.lake_url)
    manifest = Manifest(storage)
    [group] = compaction_groups(manifest.entries(), NOW, settings.compactor)

    run_compaction(settings, now=NOW)

    with pytest.raises(CompactionConflictError, match="no longer live"):
        compact_group(storage, manifest, group)
    assert manifest.entries_for(TABLE) == []


def test_silver_reading_incrementally_skips_the_retention_line(settings, bronze):
    settings = with_retention(settings)
    write(bronze, 0)
    lake = BronzeLake(storage_url=settings.lake_url)
    merged = lake.read_table(TABLE)
    consumed = ConsumedOffsets({(settings.topic_for(TABLE), 0): [(0, 1)]}, merged.manifest_bytes)
    run_compaction(settings, now=NOW)
    fresh = write(bronze, 2, hours_after_base=48)

    read = lake.read_table(TABLE, consumed)

    assert read.paths == [fresh.path] and read.entries_read == 1
    assert read.frame[OFFSET].to_list() == [2, 3]


def test_the_retention_must_be_positive_when_set(settings, monkeypatch):
    assert CompactorSettings().bronze_retention_days is None
    with pytest.raises(ValidationError, match="greater than 0"):
        CompactorSettings(bronze_retention_days=0)
    monkeypatch.setenv("BINLAKE_COMPACTOR__BRONZE_RETENTION_DAYS", "30")
    assert load_settings().compactor.bronze_retention_days == 30
    monkeypatch.setenv("BINLAKE_COMPACTOR__BRONZE_RETENTION_DAYS", "None")  # as env() writes it
    assert load_settings().compactor.bronze_retention_days is None

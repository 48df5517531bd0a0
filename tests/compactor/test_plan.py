"""Which files compaction picks: closed hours only, one schema, runs up to the target size."""

from dataclasses import replace
from datetime import timedelta

from binlake.settings import CompactorSettings
from compactor.plan import compaction_groups
from tests.support.manifest import HOUR_END, file

SETTINGS = CompactorSettings(grace_minutes=10, target_file_bytes=250, min_files=2)


def groups(entries, now=HOUR_END + timedelta(minutes=11), settings=SETTINGS):
    return [[f.first_offset for f in g.files] for g in compaction_groups(entries, now, settings)]


def test_a_closed_hour_is_cut_into_runs_up_to_the_target_size():
    entries = [file(0, 4), file(5, 9), file(10, 14), file(15, 19), file(20, 24)]
    assert groups(entries) == [[0, 5], [10, 15]]  # 20 alone: nothing to merge it with


def test_an_hour_is_closed_only_after_the_grace_period_without_new_files():
    entries = [file(0, 4), file(5, 9)]
    assert groups(entries, now=HOUR_END + timedelta(minutes=9)) == []
    late = replace(file(10, 14), written_at=(HOUR_END + timedelta(minutes=5)).timestamp())
    assert groups([*entries, late], now=HOUR_END + timedelta(minutes=11)) == []
    assert groups([*entries, late], now=HOUR_END + timedelta(minutes=16)) == [[0, 5]]


def test_hours_partitions_and_schemas_are_never_mixed():
    entries = [
        file(0, 4),
        file(5, 9, fingerprint="b"),
        file(10, 14, hour="2024-06-01-09:00"),
        file(15, 19, hour="2024-06-01-09:00"),
    ]
    assert groups(entries) == [[10, 15]]


def test_a_compacted_file_and_a_late_file_are_compacted_again():
    small = [file(0, 4), file(5, 9)]
    compacted = replace(
        file(0, 9), path="bronze/c.parquet", bytes=150, supersedes=[f.path for f in small]
    )
    late = file(30, 31)
    assert groups([*small, compacted, late]) == [[0, 30]]
    assert groups([*small, compacted]) == [], "one file left: nothing to do"

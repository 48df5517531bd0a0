"""ListedFiles: which offsets bronze lists already, and restoring lost files in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from binlake.bronze.lost_files import ListedFiles
from binlake.bronze.manifest import Manifest, ManifestEntry
from binlake.errors import StorageUnavailableError
from binlake.storage import LakeStorage

TOPIC, TABLE = "binlake.shop.orders", "shop.orders"


def entry(first: int, last: int, name: str | None = None, size: int = 3) -> ManifestEntry:
    path = f"bronze/{TABLE}/{name or first}.parquet"
    return ManifestEntry(
        TABLE, TOPIC, 0, first, last, last - first + 1, path, "2024-01-01-00:00", size, 1.0, "rows"
    )


@pytest.fixture
def storage(tmp_path: Path) -> LakeStorage:
    return LakeStorage.from_url(str(tmp_path / "lake"))


def listed(storage: LakeStorage) -> ListedFiles:
    return ListedFiles(TOPIC, 0, storage=storage, manifest=Manifest(storage))


def test_an_offset_of_an_intact_file_is_held_one_of_a_lost_file_is_not(storage):
    manifest = Manifest(storage)
    intact, lost = entry(0, 4), entry(5, 9)
    storage.write_atomic(intact.path, b"abc")
    manifest.append(intact)
    manifest.append(lost)  # its file is not in the lake
    files = listed(storage)
    assert files.file_at(2) == (intact, True)
    assert files.file_at(7) == (lost, False)
    assert files.file_at(10) == (None, False)


def test_buffered_rows_are_split_around_intact_files(storage):
    manifest = Manifest(storage)
    held = entry(3, 4)
    storage.write_atomic(held.path, b"abc")
    manifest.append(held)
    rows = [(offset, f"row{offset}") for offset in range(7)]
    assert listed(storage).runs_not_in_bronze(rows) == [rows[:3], rows[5:]]


def test_a_file_written_exactly_as_the_lost_one_is_not_listed_twice(storage):
    manifest = Manifest(storage)
    lost = entry(0, 4)
    manifest.append(lost)
    files = listed(storage)
    assert files.file_at(0) == (lost, False)
    again = ManifestEntry(**{**vars(lost), "written_at": 2.0, "rotation_reason": "shutdown"})
    assert files.record(again, lost) == (lost, False)  # nothing new to commit


def test_a_lost_file_written_again_under_another_name_is_superseded(storage):
    manifest = Manifest(storage)
    lost = entry(0, 4, name="compacted")
    manifest.append(lost)
    files = listed(storage)
    files.file_at(0)
    recorded, new = files.record(entry(0, 4), lost)
    assert new and recorded.supersedes == [lost.path]


def test_an_unreadable_manifest_is_a_storage_outage(storage):
    storage.write_atomic("bronze/_manifest", b"a file where the manifest directory goes")
    with pytest.raises(StorageUnavailableError):
        listed(storage).file_at(0)

import os

import pytest

from binlake.errors import RetriableError, StorageUnavailableError
from binlake.storage import LakeStorage


def test_atomic_write_leaves_no_temp_file_and_replaces_whole(tmp_path) -> None:
    storage = LakeStorage.from_url(f"file://{tmp_path}")
    storage.write_atomic("bronze/a/b.parquet", b"first")
    storage.write_atomic("bronze/a/b.parquet", b"second")
    assert storage.read_bytes("bronze/a/b.parquet") == b"second"
    assert os.listdir(tmp_path / "bronze" / "a") == ["b.parquet"]


def test_unwritable_location_is_a_retriable_storage_error(tmp_path) -> None:
    if os.geteuid() == 0:
        # root ignores directory permissions; a file in the way of a directory still fails
        (tmp_path / "bronze").write_text("not a directory")
    else:
        tmp_path.chmod(0o500)
    storage = LakeStorage.from_url(str(tmp_path))
    with pytest.raises(StorageUnavailableError, match="cannot write") as error:
        storage.write_atomic("bronze/a/b.parquet", b"x")
    assert isinstance(error.value, RetriableError)


def test_read_from_a_missing_file_is_empty(tmp_path) -> None:
    assert LakeStorage.from_url(str(tmp_path)).read_from("nothing.jsonl", 0) == b""


def _record_directory_fsyncs(monkeypatch) -> list[str]:
    import binlake.storage as storage_module

    synced: list[str] = []
    original = storage_module._fsync_directory

    def record(directory: str) -> None:
        synced.append(os.path.normpath(directory))
        original(directory)

    monkeypatch.setattr(storage_module, "_fsync_directory", record)
    return synced


def test_append_line_completes_short_writes(tmp_path, monkeypatch) -> None:
    storage = LakeStorage.from_url(str(tmp_path))
    real_write = os.write

    def short_write(fd: int, data) -> int:
        return real_write(fd, bytes(data[:3]))

    monkeypatch.setattr(os, "write", short_write)
    storage.append_line("m/log.jsonl", '{"a":1234567890}')
    storage.append_line("m/log.jsonl", '{"b":2}')
    monkeypatch.undo()
    assert storage.read_bytes("m/log.jsonl") == b'{"a":1234567890}\n{"b":2}\n'


def test_append_line_raises_when_a_write_makes_no_progress(tmp_path, monkeypatch) -> None:
    storage = LakeStorage.from_url(str(tmp_path))
    monkeypatch.setattr(os, "write", lambda fd, data: 0)
    with pytest.raises(StorageUnavailableError, match="cannot append"):
        storage.append_line("m/log.jsonl", '{"a":1}')


def test_append_line_starts_a_new_line_after_a_fragment(tmp_path) -> None:
    storage = LakeStorage.from_url(str(tmp_path))
    storage.append_line("m/log.jsonl", '{"a":1}')
    with open(storage.full_path("m/log.jsonl"), "ab") as out:
        out.write(b'{"table":"shop.ord')  # an append cut short by a crash
    storage.append_line("m/log.jsonl", '{"b":2}')
    storage.append_line("m/log.jsonl", '{"c":3}')
    assert storage.read_bytes("m/log.jsonl") == (b'{"a":1}\n{"table":"shop.ord\n{"b":2}\n{"c":3}\n')


def test_append_line_fsyncs_new_directories_and_the_new_file_entry(tmp_path, monkeypatch) -> None:
    storage = LakeStorage.from_url(str(tmp_path))
    synced = _record_directory_fsyncs(monkeypatch)
    storage.append_line("bronze/_manifest/manifest.jsonl", '{"a":1}')
    # the new file's entry, the new _manifest entry in bronze, the new bronze entry in the base
    for directory in ("bronze/_manifest", "bronze", ""):
        assert os.path.normpath(storage.full_path(directory)) in synced
    synced.clear()
    storage.append_line("bronze/_manifest/manifest.jsonl", '{"b":2}')
    assert synced == []  # nothing created: the file's own fsync is enough


def test_write_atomic_fsyncs_the_parent_of_every_new_directory(tmp_path, monkeypatch) -> None:
    storage = LakeStorage.from_url(str(tmp_path / "lake"))
    synced = _record_directory_fsyncs(monkeypatch)
    relative = "bronze/shop.orders/date=2026-11-21/hour=08/f.parquet"
    storage.write_atomic(relative, b"x")
    expected = [
        "",
        "bronze",
        "bronze/shop.orders",
        "bronze/shop.orders/date=2026-11-21",
        "bronze/shop.orders/date=2026-11-21/hour=08",
    ]
    for directory in expected:
        assert os.path.normpath(storage.full_path(directory)) in synced
    assert str(tmp_path) in synced  # the base itself was created too
    synced.clear()
    storage.write_atomic(relative.replace("hour=08", "hour=09"), b"y")
    date_dir = os.path.normpath(storage.full_path(expected[3]))
    # only hour=09 is new: its parent gets its entry, then the directory the file is renamed in
    assert sorted(synced) == sorted([date_dir, os.path.join(date_dir, "hour=09")])

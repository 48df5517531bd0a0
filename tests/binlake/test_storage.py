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

"""Create-once objects: on a local filesystem and on an obstore store (in memory here; the
S3 server is exercised by the integration tests)."""

from pathlib import Path

import pytest
from obstore.store import MemoryStore

from binlake.object_log import (
    LocalObjectLog,
    ObjectLog,
    StoreObjectLog,
    object_log,
)
from binlake.storage import LakeStorage


@pytest.fixture(params=["local", "memory"])
def objects(request, tmp_path: Path) -> ObjectLog:
    if request.param == "local":
        return LocalObjectLog(str(tmp_path))
    return StoreObjectLog(MemoryStore())


def test_only_the_first_create_of_a_name_wins(objects: ObjectLog) -> None:
    assert objects.create("log/00.json", b"first")
    assert not objects.create("log/00.json", b"second")
    assert objects.read("log/00.json") == b"first"
    assert objects.read("log/01.json") is None


def test_names_are_listed_in_order_after_a_name(objects: ObjectLog) -> None:
    for name in ("02.json", "00.json", "01.json"):
        objects.create(f"log/{name}", b"x")
    objects.create("log/deeper/03.json", b"x")
    assert objects.names_after("log") == ["00.json", "01.json", "02.json"]
    assert objects.names_after("log", "00.json") == ["01.json", "02.json"]
    assert objects.names_after("missing") == []


def test_put_replaces_an_object(objects: ObjectLog) -> None:
    objects.put("cp/hint", b"1")
    objects.put("cp/hint", b"2")
    assert objects.read("cp/hint") == b"2"


def test_a_local_create_leaves_no_temporary_file_and_links_only_to_a_free_name(
    tmp_path: Path,
) -> None:
    objects = LocalObjectLog(str(tmp_path))
    objects.create("log/00.json", b"a")
    objects.create("log/00.json", b"b")
    assert [p.name for p in (tmp_path / "log").iterdir()] == ["00.json"]
    objects.create("data/.staged", b"file")
    assert objects.link("data/.staged", "data/file.parquet")
    assert not objects.link("data/.staged", "data/file.parquet")
    assert (tmp_path / "data/file.parquet").read_bytes() == b"file"


def test_an_object_store_never_links(objects: ObjectLog) -> None:
    if isinstance(objects, StoreObjectLog):
        objects.create("a", b"x")
        assert not objects.link("a", "b")


def test_the_lake_picks_its_implementation(tmp_path: Path) -> None:
    assert isinstance(object_log(LakeStorage.from_url(str(tmp_path))), LocalObjectLog)
    storage = LakeStorage.from_url(str(tmp_path))
    remote = LakeStorage(storage.filesystem, storage.base, url=f"file://{tmp_path}")
    object.__setattr__(remote, "filesystem", None)  # not a local pyarrow filesystem
    assert isinstance(object_log(remote), StoreObjectLog)

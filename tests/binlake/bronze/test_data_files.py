"""Bronze files written before they are listed: never over a file another writer may list."""

import os
import time
from pathlib import Path

from binlake.bronze.data_files import delete_orphans, orphans, write_unlisted
from binlake.storage import LakeStorage

PATH = (
    "bronze/shop.orders/date=2026-11-21/hour=10/binlake.shop.orders+0+00000000000000000040.parquet"
)


def _files(lake: Path) -> list[str]:
    return sorted(str(p.relative_to(lake)) for p in lake.rglob("*") if p.is_file())


def test_a_free_name_is_taken_and_no_staged_file_is_left(tmp_path: Path) -> None:
    storage = LakeStorage.from_url(str(tmp_path))
    assert write_unlisted(storage, PATH, b"rows 40..49") == PATH
    assert _files(tmp_path) == [PATH]


def test_a_name_holding_the_same_bytes_is_kept_as_is(tmp_path: Path) -> None:
    storage = LakeStorage.from_url(str(tmp_path))
    write_unlisted(storage, PATH, b"rows 40..49")  # a flush retried after a crash
    assert write_unlisted(storage, PATH, b"rows 40..49") == PATH
    assert _files(tmp_path) == [PATH]


def test_a_name_holding_other_bytes_is_never_replaced(tmp_path: Path) -> None:
    storage = LakeStorage.from_url(str(tmp_path))
    write_unlisted(storage, PATH, b"rows 40..49 (the winner's)")
    other = write_unlisted(storage, PATH, b"rows 40..45 (the loser's)")
    assert other != PATH and other.startswith(PATH.removesuffix(".parquet") + ".")
    assert other.endswith(".parquet")
    assert storage.read_bytes(PATH) == b"rows 40..49 (the winner's)"
    assert storage.read_bytes(other) == b"rows 40..45 (the loser's)"
    assert _files(tmp_path) == sorted([PATH, other])


def test_a_lost_file_is_restored_in_place(tmp_path: Path) -> None:
    storage = LakeStorage.from_url(str(tmp_path))
    write_unlisted(storage, PATH, b"PAR1")  # damaged
    assert write_unlisted(storage, PATH, b"rows 40..49", restoring=True) == PATH
    assert storage.read_bytes(PATH) == b"rows 40..49"


def test_orphans_are_unnamed_files_older_than_the_cutoff(tmp_path: Path) -> None:
    storage = LakeStorage.from_url(str(tmp_path))
    listed = write_unlisted(storage, PATH, b"listed")
    orphan = write_unlisted(storage, PATH, b"a loser's file")
    young = write_unlisted(storage, PATH.replace("+40", "+50").replace("0040", "0050"), b"new")
    storage.write_atomic("bronze/_manifest/log/00000000000000000000.json", b"{}")
    storage.write_atomic("bronze/shop.orders/.x.parquet.abc.staged", b"crashed before link")
    old = time.time() - 3600
    for path in (listed, orphan, "bronze/shop.orders/.x.parquet.abc.staged"):
        os.utime(storage.full_path(path), (old, old))

    found = orphans(storage, [listed], older_than=time.time() - 60)
    assert [o.path for o in found] == sorted([orphan, "bronze/shop.orders/.x.parquet.abc.staged"])
    assert young not in [o.path for o in found]
    assert delete_orphans(storage, found) == 2
    assert orphans(storage, [listed], older_than=time.time() - 60) == []
    assert storage.exists(listed) and storage.exists(young)

"""Bronze files no manifest entry names (a writer lost its commit race, or crashed before it)
are deleted by the compaction pass once they are old; listed and superseded files stay."""

import os
import time
from datetime import UTC, datetime, timedelta

from binlake.bronze.manifest import Manifest
from binlake.storage import LakeStorage
from compactor.run import ORPHAN_MIN_AGE_HOURS, collect_orphans, run_compaction

TABLE = "shop.orders"


def test_old_orphans_are_deleted_and_listed_files_kept(settings, bronze) -> None:
    c = bronze.change
    bronze.write(TABLE, [c("c", 0, id=1, status="new")])
    storage = LakeStorage.from_url(settings.lake_url)
    [listed] = Manifest(storage).entries()
    directory = os.path.dirname(listed.path)
    old_orphan = f"{directory}/binlake.shop.orders+0+00000000000000000000.0a1b2c3d4e5f.parquet"
    young_orphan = f"{directory}/binlake.shop.orders+0+00000000000000000001.parquet"
    storage.write_atomic(old_orphan, b"a loser's file")
    storage.write_atomic(young_orphan, b"a file about to be listed")
    long_ago = time.time() - (ORPHAN_MIN_AGE_HOURS + 1) * 3600
    for path in (listed.path, old_orphan):
        os.utime(storage.full_path(path), (long_ago, long_ago))

    report = run_compaction(settings, now=datetime.now(UTC))

    assert report.orphans_deleted == 1 and report.summary()["orphans_deleted"] == 1
    assert not storage.exists(old_orphan)
    assert storage.exists(listed.path) and storage.exists(young_orphan)


def test_files_a_kept_entry_supersedes_are_not_orphans(settings, bronze) -> None:
    c = bronze.change
    bronze.write(TABLE, [c("c", 0, id=1, status="new")])
    bronze.write(TABLE, [c("c", 1, id=2, status="new")])
    storage = LakeStorage.from_url(settings.lake_url)
    manifest = Manifest(storage)
    first, second = manifest.entries()
    manifest.append(
        first.__class__(**{**vars(second), "path": second.path + ".x", "supersedes": [first.path]})
    )
    later = datetime.now(UTC) + timedelta(hours=ORPHAN_MIN_AGE_HOURS + 1)
    assert collect_orphans(storage, manifest, later, retention_hours=1) == 0
    assert storage.exists(first.path) and storage.exists(second.path)

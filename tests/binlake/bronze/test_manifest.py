from datetime import UTC, datetime

from binlake.bronze.manifest import Manifest, ManifestEntry, live_entries
from binlake.storage import LakeStorage
from compactor.expiry import retention_entry
from tests.support.manifest import manifest_entry


def _entry(first: int, last: int, table: str = "shop.orders", partition: int = 0) -> ManifestEntry:
    return manifest_entry(
        first,
        last,
        table=table,
        partition=partition,
        path=f"bronze/{table}/x+{first}.parquet",
        partition_key="2026-11-21-08:00",
        primary_key=["id"],
    )


def test_reading_from_a_cursor_returns_only_new_entries(tmp_path) -> None:
    manifest = Manifest(LakeStorage.from_url(str(tmp_path)))
    assert manifest.read_since(0) == ([], 0)
    manifest.append(_entry(0, 9))
    entries, cursor = manifest.read_since(0)
    assert [e.first_offset for e in entries] == [0]
    assert manifest.read_since(cursor) == ([], cursor)
    manifest.append(_entry(10, 19))
    manifest.append(_entry(0, 4, table="shop.customers"))
    entries, later = manifest.read_since(cursor)
    assert [(e.table, e.first_offset) for e in entries] == [
        ("shop.orders", 10),
        ("shop.customers", 0),
    ]
    assert later > cursor


def test_a_partly_written_line_is_left_for_the_next_read(tmp_path) -> None:
    storage = LakeStorage.from_url(str(tmp_path))
    manifest = Manifest(storage)
    manifest.append(_entry(0, 9))
    with open(storage.full_path(manifest.path), "a") as out:
        out.write('{"table": "shop.ord')
    entries, cursor = manifest.read_since(0)
    assert len(entries) == 1
    assert manifest.read_since(cursor) == ([], cursor)


def test_last_offsets_per_topic_partition(tmp_path) -> None:
    manifest = Manifest(LakeStorage.from_url(str(tmp_path)))
    manifest.append(_entry(0, 9))
    manifest.append(_entry(10, 19))
    manifest.append(_entry(0, 3, partition=1))
    assert manifest.last_offsets() == {
        ("binlake.shop.orders", 0): 19,
        ("binlake.shop.orders", 1): 3,
    }


def test_a_fragment_left_by_a_crash_is_skipped_with_a_warning(tmp_path, caplog) -> None:
    storage = LakeStorage.from_url(str(tmp_path))
    manifest = Manifest(storage)
    manifest.append(_entry(0, 9))
    fragment_at = len(storage.read_bytes(manifest.path))
    with open(storage.full_path(manifest.path), "ab") as out:
        out.write(b'{"table":"shop.ord\n')  # cut short by a crash, then terminated
        out.write(b'{"table":"shop.orders","unexpected":1}\n')  # JSON, but not an entry
        out.write(b'{"table":"shop.\xe2\x82\n')  # cut inside a multi-byte character
    manifest.append(_entry(10, 19))
    with caplog.at_level("WARNING", logger="binlake.bronze.manifest"):
        entries, cursor = manifest.read_since(0)
    assert [e.first_offset for e in entries] == [0, 10]
    assert cursor == len(storage.read_bytes(manifest.path))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 3
    assert f"byte {fragment_at}" in warnings[0]
    # reading from a cursor reports offsets of the file, not of the chunk read
    caplog.clear()
    with caplog.at_level("WARNING", logger="binlake.bronze.manifest"):
        entries, _ = manifest.read_since(fragment_at)
    assert [e.first_offset for e in entries] == [10]
    assert f"byte {fragment_at}" in caplog.records[0].getMessage()


def test_a_limit_stops_after_that_many_entries_and_the_cursor_resumes_there(tmp_path) -> None:
    manifest = Manifest(LakeStorage.from_url(str(tmp_path)))
    for first in range(0, 50, 10):
        manifest.append(_entry(first, first + 9))
    seen, cursor, reads = [], 0, 0
    while True:
        entries, cursor = manifest.read_since(cursor, limit=2)
        if not entries:
            break
        reads += 1
        assert len(entries) <= 2
        seen += [e.first_offset for e in entries]
    assert (seen, reads) == ([0, 10, 20, 30, 40], 3)
    assert cursor == manifest.read_since(0)[1]


def test_a_retention_line_drops_the_files_it_supersedes_and_is_no_file_itself(tmp_path) -> None:
    manifest = Manifest(LakeStorage.from_url(str(tmp_path)))
    expired, kept = [_entry(0, 9), _entry(10, 19)], _entry(20, 29)
    for entry in [*expired, kept]:
        manifest.append(entry)
    line = retention_entry(
        ("shop.orders", "binlake.shop.orders", 0), expired, datetime(2027, 1, 1, tzinfo=UTC)
    )
    manifest.append(line)

    [read_back] = [e for e in manifest.entries() if not e.is_file]
    assert read_back == line and (line.path, line.rows, line.schema_version) == ("", 0, 0)
    assert (line.first_offset, line.last_offset, line.supersedes) == (
        0,
        19,
        [e.path for e in expired],
    )
    assert manifest.entries_for("shop.orders") == [kept]
    assert live_entries(manifest.entries()) == [kept]
    assert all(e.is_file for e in [*expired, kept])

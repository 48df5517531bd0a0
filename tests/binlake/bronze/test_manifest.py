import json
from datetime import UTC, datetime

from obstore.store import MemoryStore

from binlake.bronze.layout import MANIFEST_PATH
from binlake.bronze.manifest import Manifest, ManifestEntry, ManifestState, live_entries
from binlake.object_log import StoreObjectLog
from binlake.storage import LakeStorage
from compactor.expiry import retention_entry
from tests.support.manifest import manifest_entry

TOPIC_PARTITION = ("binlake.shop.orders", 0)


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


def test_a_partly_written_line_of_a_single_file_manifest_is_left_out(tmp_path) -> None:
    storage = LakeStorage.from_url(str(tmp_path))
    [end] = _legacy_lines(storage, [_entry(0, 9).to_json().encode()])
    with open(storage.full_path(MANIFEST_PATH), "a") as out:
        out.write('{"table": "shop.ord')
    entries, cursor = Manifest(storage).read_since(0)
    assert len(entries) == 1 and cursor == end
    assert Manifest(storage).read_since(cursor) == ([], cursor)


def test_each_commit_is_one_immutable_object_named_by_its_sequence_number(tmp_path) -> None:
    manifest = Manifest(LakeStorage.from_url(str(tmp_path)))
    manifest.commit(lambda state: [_entry(0, 9), _entry(0, 4, partition=1)])
    manifest.append(_entry(10, 19))
    log_dir = tmp_path / "bronze/_manifest/log"
    assert sorted(p.name for p in log_dir.iterdir()) == [f"{0:020d}.json", f"{1:020d}.json"]
    first = json.loads((log_dir / f"{0:020d}.json").read_bytes())
    assert len(first["entries"]) == 2
    assert first["high_water"] == [["binlake.shop.orders", 0, 9], ["binlake.shop.orders", 1, 4]]
    assert manifest.read_since(0) == ([_entry(0, 9), _entry(0, 4, partition=1), _entry(10, 19)], 2)
    assert manifest.read_since(1) == ([_entry(10, 19)], 2)
    assert manifest.read_since(2) == ([], 2) and manifest.end() == 2
    assert not (tmp_path / MANIFEST_PATH).exists()


def test_a_plan_sees_the_commits_of_other_writers_and_is_planned_again_after_losing(
    tmp_path,
) -> None:
    storage = LakeStorage.from_url(str(tmp_path))
    ours, theirs = Manifest(storage), Manifest(storage)
    ours.append(_entry(0, 9))
    seen: list[int] = []

    def plan(state: ManifestState) -> list[ManifestEntry]:
        in_bronze = state.high_water.get(("binlake.shop.orders", 0), -1)
        seen.append(in_bronze)
        if len(seen) == 1:
            theirs.append(_entry(10, 14))  # another writer takes the next number meanwhile
        return [_entry(in_bronze + 1, 19)]

    assert ours.commit(plan) == [_entry(15, 19)]
    assert seen == [9, 14]
    assert [(e.first_offset, e.last_offset) for e in ours.entries()] == [(0, 9), (10, 14), (15, 19)]


def test_a_plan_that_lists_nothing_commits_nothing(tmp_path) -> None:
    manifest = Manifest(LakeStorage.from_url(str(tmp_path)))
    assert manifest.commit(lambda state: []) == []
    assert manifest.end() == 0


def test_checkpoints_hold_the_live_files_and_a_hint_points_to_the_newest(tmp_path) -> None:
    storage = LakeStorage.from_url(str(tmp_path))
    manifest = Manifest(storage)
    manifest.checkpoint_interval = 3
    for first in range(0, 70, 10):
        manifest.append(_entry(first, first + 9))
    manifest.append(
        retention_entry(
            ("shop.orders", "binlake.shop.orders", 0),
            [_entry(0, 9)],
            datetime(2027, 1, 1, tzinfo=UTC),
        )
    )
    root = tmp_path / "bronze/_manifest"
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == [
        f"{2:020d}.json",
        f"{5:020d}.json",
    ]
    assert json.loads((root / "_last_checkpoint").read_bytes()) == {
        "seq": 5,
        "high_water": [["binlake.shop.orders", 0, 59]],
    }
    # Commits before the checkpoint are not read any more: removing them changes nothing.
    for seq in range(5):
        (root / "log" / f"{seq:020d}.json").unlink()
    fresh = Manifest(storage)
    assert [e.first_offset for e in live_entries(fresh.entries())] == [10, 20, 30, 40, 50, 60]
    assert fresh.last_offsets() == {("binlake.shop.orders", 0): 69}
    assert fresh.end() == 8
    fresh.append(_entry(70, 79))  # a writer starting from the checkpoint commits after the end
    assert (root / "log" / f"{8:020d}.json").exists()
    # A stale hint (or none) still finds the newest checkpoint.
    (root / "_last_checkpoint").write_bytes(b'{"seq": 2}')
    assert Manifest(storage).last_offsets() == {("binlake.shop.orders", 0): 79}
    (root / "_last_checkpoint").unlink()
    assert Manifest(storage).read_since(0)[1] == 9


def test_a_cursor_before_a_checkpoint_reads_the_commits_it_has_not_seen(tmp_path) -> None:
    manifest = Manifest(LakeStorage.from_url(str(tmp_path)))
    manifest.checkpoint_interval = 2
    for first in range(0, 50, 10):
        manifest.append(_entry(first, first + 9))
    assert [e.first_offset for e in manifest.read_since(3)[0]] == [30, 40]
    assert manifest.read_since(3, limit=1) == ([_entry(30, 39)], 4)


def test_last_offsets_per_topic_partition(tmp_path) -> None:
    manifest = Manifest(LakeStorage.from_url(str(tmp_path)))
    manifest.append(_entry(0, 9))
    manifest.append(_entry(10, 19))
    manifest.append(_entry(0, 3, partition=1))
    assert manifest.last_offsets() == {
        ("binlake.shop.orders", 0): 19,
        ("binlake.shop.orders", 1): 3,
    }


def _legacy_lines(storage: LakeStorage, lines: list[bytes]) -> list[int]:
    """Write the former single-file manifest; returns where each line ends (byte offsets)."""
    data, ends = b"", []
    for line in lines:
        data += line + b"\n"
        ends.append(len(data))
    storage.write_atomic(MANIFEST_PATH, data)
    return ends


def test_a_single_file_manifest_is_read_as_the_log_and_migrated_by_the_first_commit(
    tmp_path, caplog
) -> None:
    storage = LakeStorage.from_url(str(tmp_path))
    ends = _legacy_lines(
        storage,
        [
            _entry(0, 9).to_json().encode(),
            b'{"table":"shop.ord',  # cut short by a crash, then terminated
            b'{"table":"shop.orders","unexpected":1}',  # JSON, but not an entry
            _entry(10, 19).to_json().encode(),
        ],
    )
    manifest = Manifest(storage)
    with caplog.at_level("WARNING", logger="binlake.bronze.manifest"):
        entries, cursor = manifest.read_since(0)
    assert [e.first_offset for e in entries] == [0, 10]
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 2
    assert cursor == ends[-1] == manifest.end()  # an old byte cursor at the end stays there
    # an old byte cursor in the middle still means "what came after it"
    assert [e.first_offset for e in manifest.read_since(ends[0])[0]] == [10]
    assert manifest.read_since(0, limit=1) == ([entries[0]], ends[0])
    assert manifest.last_offsets() == {("binlake.shop.orders", 0): 19}

    manifest.append(_entry(20, 29))  # migrates, then commits after the migrated entries
    log_dir = tmp_path / "bronze/_manifest/log"
    assert sorted(p.name for p in log_dir.iterdir()) == [
        f"{ends[-1] - 1:020d}.json",
        f"{ends[-1]:020d}.json",
    ]
    fresh = Manifest(storage)
    assert [e.first_offset for e in fresh.entries()] == [0, 10, 20]
    assert [e.first_offset for e in fresh.read_since(ends[0])[0]] == [10, 20]
    assert fresh.read_since(ends[-1]) == ([_entry(20, 29)], ends[-1] + 1)
    assert fresh.last_offsets() == {("binlake.shop.orders", 0): 29}


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


def test_the_log_works_the_same_on_an_object_store(tmp_path) -> None:
    store = StoreObjectLog(MemoryStore())

    def on_store() -> Manifest:
        manifest = Manifest(LakeStorage.from_url(str(tmp_path)))
        manifest._objects = store  # what `object_log` gives for an s3:// lake
        manifest.checkpoint_interval = 2
        return manifest

    writer, other = on_store(), on_store()
    writer.append(_entry(0, 9))
    other.append(_entry(10, 19))  # takes number 1 from `other`'s own read
    assert writer.commit(lambda state: [_entry(state.high_water[TOPIC_PARTITION] + 1, 29)]) == [
        _entry(20, 29)
    ]
    assert store.names_after("bronze/_manifest/log") == [f"{n:020d}.json" for n in range(3)]
    assert store.names_after("bronze/_manifest/checkpoints") == [f"{1:020d}.json"]
    assert on_store().read_since(0) == ([_entry(0, 9), _entry(10, 19), _entry(20, 29)], 3)
    assert on_store().read_since(2) == ([_entry(20, 29)], 3)
    assert on_store().last_offsets() == {TOPIC_PARTITION: 29}
    assert not list(tmp_path.rglob("*.json")), "nothing went to the local disk"


def test_a_starting_writer_parses_the_checkpoint_once_and_resumes_from_the_hint(
    tmp_path, monkeypatch
) -> None:
    from binlake.bronze import manifest as manifest_module

    manifest = Manifest(LakeStorage.from_url(str(tmp_path)))
    manifest.checkpoint_interval = 5
    for first in range(0, 100, 10):
        manifest.append(_entry(first, first + 9))
    parsed = []
    original = manifest_module.ManifestState.from_json

    def counting(data: bytes) -> manifest_module.ManifestState:
        parsed.append(len(data))
        return original(data)

    monkeypatch.setattr(manifest_module.ManifestState, "from_json", counting)
    starting = Manifest(LakeStorage.from_url(str(tmp_path)))
    assert starting.last_offsets() == {("binlake.shop.orders", 0): 99}
    assert parsed == []  # the hint's marks, no checkpoint parsed
    first = starting.entries_for("shop.orders")
    assert [(e.first_offset, e.last_offset) for e in first] == [
        (f, f + 9) for f in range(0, 100, 10)
    ]
    for _ in range(3):
        assert starting.entries_for("shop.orders") == first
    starting.append(_entry(100, 109))
    assert len(parsed) == 1  # one parse for every read and the commit
    assert starting.end() == 11 and Manifest(LakeStorage.from_url(str(tmp_path))).end() == 11

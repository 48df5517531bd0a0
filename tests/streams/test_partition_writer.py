"""The per-partition bronze writer: every state transition and rotation reason, with a fake clock
and real Parquet files in a temp lake."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from binlake.bronze import layout
from binlake.bronze.continuity import offset_continuity
from binlake.bronze.coverage import is_intact
from binlake.bronze.layout import HourBucket
from binlake.bronze.manifest import Manifest, ManifestEntry, live_entries
from binlake.bronze.schema_drift import fingerprint
from binlake.errors import DecodeError, StorageUnavailableError
from binlake.silver.consumed import ConsumedOffsets
from compactor.expiry import retention_entry
from compactor.plan import CompactionGroup
from compactor.retention import expired_replaced_files
from compactor.rewrite import compact_group
from streams.partition_writer import (
    PartitionWriter,
    Released,
    RotationReason,
    WriterClosedError,
    WriterState,
)
from tests.support.partition_writer import (
    HOUR_MS,
    KEY_SCHEMA,
    ROW_SCHEMA,
    T10,
    TABLE,
    TOPIC,
    WIDER_SCHEMA,
    change,
    make_writer,
    read_back,
    tombstone,
)

# -- the happy path ------------------------------------------------------------------------------


def test_rows_rotation_writes_named_file_and_manifest_then_releases(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock, flush_rows=3, partition=2)
    assert writer.state is WriterState.EMPTY

    assert writer.add(40, change("c", 1), token="t40") == Released()
    assert writer.state is WriterState.BUFFERING
    assert writer.first_offset == 40
    assert not writer.add(41, change("u", 1, name="renamed"), token="t41")
    released = writer.add(42, change("d", 1), token="t42")

    assert writer.state is WriterState.EMPTY
    assert released.tokens == ["t40", "t41", "t42"]
    [entry] = released.files
    assert entry.path == (f"bronze/{TABLE}/date=2026-11-21/hour=10/{TOPIC}+2+{40:020d}.parquet")
    assert entry.path == layout.bronze_file_path(TABLE, HourBucket("2026-11-21", 10), TOPIC, 2, 40)
    assert manifest.entries() == [entry]
    assert entry == ManifestEntry(
        table=TABLE,
        topic=TOPIC,
        partition=2,
        first_offset=40,
        last_offset=42,
        rows=3,
        path=entry.path,
        partition_key="2026-11-21-10:00",
        bytes=Path(storage.full_path(entry.path)).stat().st_size,
        written_at=1_234_567_890.5,
        rotation_reason="rows",
        primary_key=["id"],
        min_source_ts_ms=T10,
        max_source_ts_ms=T10,
        schema_fingerprint=fingerprint(ROW_SCHEMA),
        schema_version=1,
    )
    assert writer.committable_offset == 43


def test_parquet_file_has_provenance_then_table_columns(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock, flush_rows=2)
    writer.add(7, change("r", 5, ts_ms=T10 + 1500, pos=0))
    [entry] = writer.add(8, change("u", 5, ts_ms=T10 + 2500, pos=812, qty=None)).files

    table = read_back(storage, entry)
    assert table.column_names == [*layout.PROVENANCE_COLUMNS, "id", "name", "qty"]
    assert table.schema.field(layout.PARTITION).type == pa.int32()
    assert table.schema.field(layout.SOURCE_ROW).type == pa.int32()
    assert table.schema.field("id").type == pa.int64()
    rows = table.to_pylist()
    assert rows[0] == {
        "_topic": TOPIC,
        "_partition": 0,
        "_offset": 7,
        "_op": "r",
        "_source_file": "mariadb-bin.000003",
        "_source_pos": 0,
        "_source_row": 0,
        "_source_ts_ms": T10 + 1500,
        "_source_snapshot": "false",
        "_captured_ts_ms": T10 + 1520,
        "id": 5,
        "name": "n5",
        "qty": 10,
    }
    assert rows[1]["_offset"] == 8 and rows[1]["qty"] is None and rows[1]["_source_pos"] == 812
    metadata = pq.read_metadata(storage.full_path(entry.path))
    assert json.loads(metadata.metadata[layout.META_PRIMARY_KEY]) == ["id"]
    assert metadata.metadata[layout.META_TABLE] == TABLE.encode()
    assert metadata.row_group(0).column(0).compression == "ZSTD"
    assert entry.min_source_ts_ms == T10 + 1500 and entry.max_source_ts_ms == T10 + 2500


# -- rotation reasons ----------------------------------------------------------------------------


def test_age_rotation_by_tick(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock, flush_seconds=5.0)
    writer.add(0, change(), token=0)
    clock.advance(2.0)
    writer.add(1, change(id_=2), token=1)
    clock.advance(2.9)
    assert writer.age() == pytest.approx(4.9)
    assert writer.tick() == Released()  # 4.9 s after the first row: not yet
    assert writer.state is WriterState.BUFFERING
    clock.advance(0.1)
    released = writer.tick()
    assert released.tokens == [0, 1]
    assert released.files[0].rotation_reason == RotationReason.AGE.value
    assert writer.state is WriterState.EMPTY
    assert writer.tick() == Released()  # nothing buffered


def test_age_is_checked_on_each_record_too(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock, flush_seconds=5.0)
    writer.add(0, change())
    clock.advance(6.0)
    released = writer.add(1, change(id_=2))
    assert [(e.first_offset, e.last_offset, e.rotation_reason) for e in released.files] == [
        (0, 1, "age")
    ]


def test_age_counts_from_the_first_row_of_each_file(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock, flush_rows=1, flush_seconds=5.0)
    writer.add(0, change())  # flushed by rows
    clock.advance(100.0)
    writer2 = make_writer(storage, manifest, clock, flush_seconds=5.0, partition=1)
    writer2.add(0, change())
    assert writer2.age() == 0.0
    clock.advance(4.0)
    assert writer2.tick() == Released()


def test_bytes_rotation(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock, flush_bytes=1000)
    assert not writer.add(0, change(), size=600)
    assert writer.buffered_bytes == 600
    released = writer.add(1, change(id_=2), size=600)
    assert released.files[0].rotation_reason == "bytes"
    assert writer.buffered_bytes == 0


def test_hour_boundary_rotates_before_buffering_the_new_hour(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(10, change(ts_ms=T10 + HOUR_MS - 1))  # 10:59:59.999
    released = writer.add(11, change(id_=2, ts_ms=T10 + HOUR_MS))  # 11:00:00.000
    [entry] = released.files
    assert (entry.first_offset, entry.last_offset, entry.rotation_reason) == (
        10,
        10,
        "hour_boundary",
    )
    assert "/hour=10/" in entry.path and entry.partition_key == "2026-11-21-10:00"
    assert writer.bucket == HourBucket("2026-11-21", 11)
    [second] = writer.close(RotationReason.SHUTDOWN).files
    assert "/hour=11/" in second.path and second.first_offset == 11


def test_hour_comes_from_source_commit_time_not_the_wall_clock(storage, manifest, clock):
    # The wall clock says 2030; the changes were committed on 2024-02-29 at 23:xx UTC.
    leap = 1_709_250_000_000  # 2024-02-29 23:40:00 UTC
    writer = make_writer(storage, manifest, clock, wall_clock=lambda: 1_900_000_000.0)
    writer.add(0, change(ts_ms=leap))
    [entry] = writer.close(RotationReason.SHUTDOWN).files
    assert entry.partition_key == "2024-02-29-23:00"
    assert "date=2024-02-29/hour=23/" in entry.path


def test_tombstone_is_bucketed_by_its_kafka_timestamp(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, tombstone(1), timestamp_ms=T10 + 5 * HOUR_MS + 1)
    assert writer.bucket == HourBucket("2026-11-21", 15)
    with pytest.raises(DecodeError):
        make_writer(storage, manifest, clock, partition=1).add(0, tombstone(1))  # no time at all


def test_a_tombstone_follows_its_delete_into_the_delete_hour(storage, manifest, clock):
    # Debezium is catching up: the delete was committed at 10:xx, Kafka stamped it at 15:xx.
    writer = make_writer(storage, manifest, clock, flush_rows=2)
    writer.add(0, change("c", 1))
    released = writer.add(1, change("d", 1))  # the delete is flushed (rows) ...
    assert released.files
    assert not writer.add(2, tombstone(1), timestamp_ms=T10 + 5 * HOUR_MS)
    assert writer.bucket == HourBucket("2026-11-21", 10)  # ... its tombstone still follows it
    [entry] = writer.add(3, change("d", 2)).files  # the key-only file widened to full rows
    assert (entry.first_offset, entry.last_offset, entry.rotation_reason) == (2, 3, "rows")
    assert not writer.add(4, tombstone(2), timestamp_ms=T10 + 5 * HOUR_MS)
    assert writer.bucket == HourBucket("2026-11-21", 10)
    writer.close(RotationReason.SHUTDOWN)
    writer = make_writer(storage, manifest, clock, resume_after=4)
    # A tombstone of another key than the previous delete goes by its Kafka timestamp.
    writer.add(5, change("d", 3))
    released = writer.add(6, tombstone(4), timestamp_ms=T10 + 5 * HOUR_MS)
    assert released.files[0].rotation_reason == "hour_boundary"
    assert writer.bucket == HourBucket("2026-11-21", 15)


def test_schema_change_rotates(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change())
    writer.add(1, change(id_=2, schema=ROW_SCHEMA))  # an equal schema object is fine
    released = writer.add(2, change(id_=3, schema=WIDER_SCHEMA, note="x"))
    [entry] = released.files
    assert (entry.last_offset, entry.rotation_reason) == (1, "schema_change")
    assert writer.row_schema is WIDER_SCHEMA
    [second] = writer.close(RotationReason.SHUTDOWN).files
    assert read_back(storage, second).column_names[-1] == "note"


def test_another_table_on_the_same_partition_rotates(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change())
    released = writer.add(1, change(table="shop.customers"))
    assert released.files[0].rotation_reason == "schema_change"


def test_delete_and_its_tombstone_share_a_file(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change("c", 9))
    writer.add(1, change("d", 9))
    assert not writer.add(2, tombstone(9), timestamp_ms=T10 + 30)
    [entry] = writer.close(RotationReason.SHUTDOWN).files
    rows = read_back(storage, entry).to_pylist()
    assert [r["_op"] for r in rows] == ["c", "d", "x"]
    assert rows[2]["id"] == 9 and rows[2]["name"] is None and rows[2]["qty"] is None
    assert rows[2]["_source_ts_ms"] is None and rows[2]["_source_file"] is None


def test_a_file_of_tombstones_widens_to_the_full_row(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, tombstone(1), timestamp_ms=T10)
    assert writer.row_schema is KEY_SCHEMA
    assert not writer.add(1, change("c", 2))
    assert writer.row_schema is ROW_SCHEMA
    [entry] = writer.close(RotationReason.SHUTDOWN).files
    assert read_back(storage, entry).column_names[-3:] == ["id", "name", "qty"]


def test_partition_revoked_flushes_and_closes(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(5, change(), token="a")
    released = writer.close(RotationReason.PARTITION_REVOKED)
    assert released.tokens == ["a"]
    assert released.files[0].rotation_reason == "partition_revoked"
    assert writer.state is WriterState.CLOSED
    assert writer.close(RotationReason.SHUTDOWN) == Released()
    with pytest.raises(WriterClosedError):
        writer.add(6, change())


def test_shutdown_with_nothing_buffered_writes_nothing(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    assert writer.close(RotationReason.SHUTDOWN) == Released()
    assert manifest.entries() == [] and storage.writes == []


def test_flushing_state_while_the_file_is_written(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock, flush_rows=1)
    seen: list[WriterState] = []
    original = storage.write_atomic

    def spy(relative: str, data: bytes) -> None:
        seen.append(writer.state)
        original(relative, data)

    object.__setattr__(storage, "write_atomic", spy)
    writer.add(0, change())
    assert seen == [WriterState.FLUSHING]
    assert writer.state is WriterState.EMPTY


def test_written_at_is_taken_after_the_file_is_durable(storage, manifest, clock):
    events: list[str] = []
    original = storage.write_atomic

    def write(relative: str, data: bytes) -> None:
        original(relative, data)
        events.append("file durable")

    def wall_clock() -> float:
        events.append("written_at")
        return 42.0

    object.__setattr__(storage, "write_atomic", write)
    writer = make_writer(storage, manifest, clock, flush_rows=1, wall_clock=wall_clock)
    [entry] = writer.add(0, change()).files
    assert events == ["file durable", "written_at"] and entry.written_at == 42.0


# -- failures, retries and commit safety ----------------------------------------------------------


def test_nothing_is_committable_until_the_manifest_append_succeeds(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock, flush_rows=2)
    manifest.failing = True
    writer.add(0, change(), token="a")
    released = writer.add(1, change(id_=2), token="b")  # rotation by rows fails: kept, retried

    assert released == Released()
    assert writer.committable_offset == 0
    assert writer.state is WriterState.BUFFERING
    assert writer.rotation_due is RotationReason.ROWS
    path = layout.bronze_file_path(TABLE, HourBucket("2026-11-21", 10), TOPIC, 0, 0)
    assert storage.exists(path)  # the file is there, but not part of bronze yet
    assert manifest.entries() == []

    with pytest.raises(StorageUnavailableError):
        writer.tick()
    assert writer.committable_offset == 0

    manifest.failing = False
    released = writer.tick()
    assert released.tokens == ["a", "b"]
    assert [e.path for e in released.files] == [path]
    assert writer.committable_offset == 2
    assert [e.path for e in manifest.entries()] == [path]


def test_retried_flush_rewrites_the_same_file_name(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock, flush_rows=3)
    storage.failing = True
    for offset in range(3):
        writer.add(100 + offset, change(id_=offset))
    assert writer.rotation_due is RotationReason.ROWS
    with pytest.raises(StorageUnavailableError):
        writer.tick()
    storage.failing = False
    [entry] = writer.tick().files

    # each attempt stages the file under a hidden name of its own, then links it to its name
    assert len(storage.writes) == 3
    name = Path(entry.path)
    for staged in map(Path, storage.writes):
        assert staged.parent == name.parent
        assert re.fullmatch(rf"\.{re.escape(name.name)}\.[0-9a-f]{{12}}\.staged", staged.name)
    assert entry.path.endswith(f"+0+{100:020d}.parquet")
    directory = Path(storage.full_path(entry.path)).parent
    assert [p.name for p in directory.iterdir()] == [Path(entry.path).name]  # no temp files left
    assert read_back(storage, entry).column("_offset").to_pylist() == [100, 101, 102]


def test_a_due_rotation_is_retried_before_the_next_record(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock, flush_rows=1)
    storage.failing = True
    writer.add(0, change())  # flush fails, the row stays buffered
    with pytest.raises(StorageUnavailableError):
        writer.add(1, change(id_=2))  # the due rotation must happen first: nothing changes
    assert writer.buffered_rows == 1
    storage.failing = False
    released = writer.add(1, change(id_=2))
    assert [(e.first_offset, e.last_offset) for e in released.files] == [(0, 0), (1, 1)]


def test_failed_rotation_before_a_new_hour_leaves_the_writer_unchanged(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change(), token="a")
    storage.failing = True
    with pytest.raises(StorageUnavailableError):
        writer.add(1, change(ts_ms=T10 + HOUR_MS), token="b")
    assert (writer.buffered_rows, writer.bucket) == (1, HourBucket("2026-11-21", 10))
    storage.failing = False
    released = writer.add(1, change(ts_ms=T10 + HOUR_MS), token="b")  # the caller retries
    assert released.tokens == ["a"]
    assert writer.close(RotationReason.SHUTDOWN).tokens == ["b"]


def test_an_append_that_landed_despite_an_error_is_not_appended_twice(storage, clock):
    class LandsThenFails(Manifest):
        fail_once = True

        def _publish(self, seq: int, data: bytes) -> bool:
            super()._publish(seq, data)
            if self.fail_once:
                self.fail_once = False
                raise StorageUnavailableError("fsync failed after the write")

    manifest = LandsThenFails(storage)
    writer = make_writer(storage, manifest, clock, flush_rows=1)
    writer.add(0, change(), token="a")
    assert writer.rotation_due is RotationReason.ROWS
    assert writer.tick().tokens == ["a"]
    assert len(manifest.entries()) == 1


# -- resume, pass-over, duplicates ---------------------------------------------------------------


def test_offsets_already_in_the_manifest_are_released_without_writing(storage, manifest, clock):
    first = make_writer(storage, manifest, clock, flush_rows=3)
    for offset in (39, 40, 41):
        first.add(offset, change(id_=offset))
    writer = make_writer(storage, manifest, clock, resume_after=41)
    for offset in (39, 40, 41):
        assert writer.is_handled(offset)
        assert writer.skip_handled(offset, token=offset).tokens == [offset]
    assert writer.committable_offset == 42
    assert not writer.is_handled(42)
    writer.add(42, change())
    [entry] = writer.close(RotationReason.SHUTDOWN).files
    assert entry.first_offset == 42
    assert len(manifest.entries()) == 2


def test_schema_history_resumes_from_the_files_bronze_retention_left(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change())
    [old] = writer.add(1, change(id_=2, schema=WIDER_SCHEMA, note="x")).files
    [newest] = writer.close(RotationReason.SHUTDOWN).files
    manifest.append(retention_entry((TABLE, TOPIC, 0), [old], datetime(2027, 1, 1, tzinfo=UTC)))

    again = make_writer(storage, manifest, clock, resume_after=1)
    again.add(2, change(id_=3, schema=WIDER_SCHEMA))
    assert again.schema_version == newest.schema_version == 2

    manifest.append(retention_entry((TABLE, TOPIC, 0), [newest], datetime(2027, 1, 2, tzinfo=UTC)))
    fresh = make_writer(storage, manifest, clock, resume_after=1)
    fresh.add(2, change(id_=3))
    tracked = fresh.table_schema(TABLE)
    assert tracked is not None and tracked.schema.names == ROW_SCHEMA.names, (
        "all expired: the history starts from the next row, not from the retention line"
    )


# -- replay: offsets the manifest lists, with their files intact or lost -------------------------


def write_files(storage, manifest, clock, bounds: list[tuple[int, int]]) -> list[ManifestEntry]:
    """Files holding offsets first..last for each of `bounds` (consecutive), one row each."""
    writer = make_writer(storage, manifest, clock)
    entries = []
    for first, last in bounds:
        for offset in range(first, last + 1):
            writer.add(offset, change(id_=offset))
        entries += writer.flush(RotationReason.ROWS).files
    return entries


def replay(writer: PartitionWriter, offsets: range) -> Released:
    """Offer `offsets` as the bronze worker does: handled ones are skipped, the others added."""
    released = Released()
    for offset in offsets:
        if writer.is_handled(offset):
            released.extend(writer.skip_handled(offset, token=offset))
        else:
            released.extend(writer.add(offset, change(id_=offset), token=offset))
    return released.extend(writer.close(RotationReason.SHUTDOWN))


def test_a_replay_restores_lost_files_in_place_and_skips_intact_ones(storage, manifest, clock):
    entries = write_files(storage, manifest, clock, [(0, 2), (3, 5), (6, 8), (9, 11)])
    manifest_before = manifest.entries()
    lost = {
        entries[1].path: Path(storage.full_path(entries[1].path)).read_bytes(),
        entries[3].path: Path(storage.full_path(entries[3].path)).read_bytes(),
    }
    for path in lost:
        Path(storage.full_path(path)).unlink()
    storage.writes.clear()

    writer = make_writer(storage, manifest, clock, flush_rows=100, resume_after=11)
    released = replay(writer, range(14))

    assert released.tokens == list(range(14))
    # The lost files are back, byte for byte, under their names; the intact ones untouched.
    assert storage.writes == [entries[1].path, entries[3].path, storage.writes[-1]]
    for path, data in lost.items():
        assert Path(storage.full_path(path)).read_bytes() == data
    # Restored files need no entry; only the new offsets 12..13 got one.
    *restored, new = released.files
    assert restored == [entries[1], entries[3]]
    assert (new.first_offset, new.last_offset) == (12, 13)
    assert manifest.entries() == [*manifest_before, new]


def test_a_replay_of_a_complete_range_writes_nothing(storage, manifest, clock):
    write_files(storage, manifest, clock, [(0, 4), (5, 9)])
    manifest_before = manifest.read_since(0)
    storage.writes.clear()
    writer = make_writer(storage, manifest, clock, resume_after=9)
    assert replay(writer, range(2, 10)).tokens == list(range(2, 10))
    assert storage.writes == []
    assert manifest.read_since(0) == manifest_before


def test_a_lost_file_rewritten_in_two_parts_supersedes_its_entry(storage, manifest, clock):
    [lost, after] = write_files(storage, manifest, clock, [(0, 5), (6, 7)])
    Path(storage.full_path(lost.path)).unlink()
    writer = make_writer(storage, manifest, clock, flush_rows=4, resume_after=7)
    released = replay(writer, range(8))
    [head, tail] = released.files
    assert (head.path, head.first_offset, head.last_offset) == (lost.path, 0, 3)
    assert (tail.first_offset, tail.last_offset) == (4, 5)  # ends where the lost file ended
    assert tail.rotation_reason == "bronze_boundary"
    # Readers take a path's last entry: offsets 0..7 once each, in three files.
    latest = {e.path: e for e in live_entries(manifest.entries())}
    assert sorted((e.first_offset, e.last_offset) for e in latest.values()) == [
        (0, 3),
        (4, 5),
        (6, 7),
    ]
    assert after.path in latest


def assert_offsets_once_in_intact_files(storage, manifest, offsets: range) -> None:
    live = live_entries(manifest.entries())
    held = sorted(o for e in live for a, b in e.ranges() for o in range(a, b + 1))
    assert held == list(offsets)
    assert all(is_intact(storage, e) for e in live), [e.path for e in live]


def test_a_lost_compacted_file_is_written_again_and_stops_being_listed(storage, manifest, clock):
    small = write_files(storage, manifest, clock, [(0, 2), (3, 5)])
    group = CompactionGroup(TABLE, TOPIC, 0, small[0].partition_key, tuple(small))
    compacted = compact_group(storage, manifest, group).entry
    Path(storage.full_path(compacted.path)).unlink()
    writer = make_writer(storage, manifest, clock, flush_rows=100, resume_after=5)

    [rewritten] = replay(writer, range(6)).files

    assert (rewritten.first_offset, rewritten.last_offset) == (0, 5)
    assert rewritten.supersedes == [compacted.path]  # its name carries 0-5, the new one 0
    assert_offsets_once_in_intact_files(storage, manifest, range(6))
    # The rewritten file has a small file's old name: compaction's retention must keep it.
    days_later = datetime.fromtimestamp(rewritten.written_at, UTC) + timedelta(days=2)
    assert rewritten.path not in expired_replaced_files(manifest.entries(), days_later, 1)


def test_a_replay_from_before_expired_bronze_writes_it_back_to_stay(storage, manifest, clock):
    [old, _] = write_files(storage, manifest, clock, [(0, 2), (3, 5)])
    expired_at = datetime(2027, 1, 1, tzinfo=UTC)
    manifest.append(retention_entry((TABLE, TOPIC, 0), [old], expired_at))
    writer = make_writer(storage, manifest, clock, resume_after=5)

    [back] = replay(writer, range(6)).files

    assert (back.path, back.first_offset, back.last_offset) == (old.path, 0, 2)
    assert_offsets_once_in_intact_files(storage, manifest, range(6))
    assert expired_replaced_files(manifest.entries(), expired_at + timedelta(days=30), 1) == []


def test_a_lost_file_whose_first_record_now_lands_elsewhere_stops_being_listed(
    storage, manifest, clock
):
    """Replayed from after the delete, the lost file's leading tombstone is bucketed by its own
    Kafka time (the next hour): the file comes back under another name, superseding the lost
    one's entry."""
    writer = make_writer(storage, manifest, clock)
    late = T10 + HOUR_MS - 5
    delete = change(op="d", id_=7, ts_ms=late)
    writer.add(0, delete, timestamp_ms=late)
    writer.flush(RotationReason.ROWS)
    records = [(1, tombstone(7), T10 + HOUR_MS + 5), (2, change(id_=8, ts_ms=late), late)]
    for offset, event, timestamp_ms in records:
        writer.add(offset, event, timestamp_ms=timestamp_ms)
    [lost] = writer.flush(RotationReason.ROWS).files
    Path(storage.full_path(lost.path)).unlink()

    replaying = make_writer(storage, manifest, clock, resume_after=2)
    written = []
    for offset, event, timestamp_ms in [(0, delete, late), *records]:
        if replaying.is_handled(offset):
            written += replaying.skip_handled(offset, offset).files
        else:
            written += replaying.add(offset, event, timestamp_ms=timestamp_ms, token=offset).files
    written += replaying.close(RotationReason.SHUTDOWN).files

    assert lost.path not in {e.path for e in written}
    assert sum(lost.path in e.supersedes for e in written) == 1
    assert_offsets_once_in_intact_files(storage, manifest, range(3))


def test_a_truncated_file_counts_as_lost(storage, manifest, clock):
    [damaged, _] = write_files(storage, manifest, clock, [(0, 2), (3, 4)])
    Path(storage.full_path(damaged.path)).write_bytes(b"PAR1")
    writer = make_writer(storage, manifest, clock, resume_after=4)
    assert not writer.is_handled(0)
    [restored] = replay(writer, range(5)).files
    assert restored == damaged and len(manifest.entries()) == 2
    assert Path(storage.full_path(damaged.path)).stat().st_size == damaged.bytes


def test_rows_another_writer_listed_meanwhile_are_dropped_around_its_file(storage, manifest, clock):
    stalled = make_writer(storage, manifest, clock)
    for offset in range(10):
        stalled.add(offset, change(id_=offset), token=offset)
    # Meanwhile the partition's new owner wrote offsets 4..6.
    owner = make_writer(storage, manifest, clock)
    for offset in range(4, 7):
        owner.add(offset, change(id_=offset))
    [theirs] = owner.flush(RotationReason.ROWS).files
    released = stalled.flush(RotationReason.AGE)
    assert released.tokens == list(range(10))
    assert [(e.first_offset, e.last_offset) for e in released.files] == [(0, 3), (7, 9)]
    assert stalled.is_handled(6) and not stalled.is_handled(10)
    assert theirs in manifest.entries()


def test_passed_over_records_are_released_in_offset_order(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    assert writer.pass_over(0, token=0).tokens == [0]  # nothing buffered: released at once
    writer.add(1, change(), token=1)
    assert writer.pass_over(2, token=2) == Released()  # held behind offset 1
    writer.add(3, change(id_=3), token=3)
    assert writer.pass_over(4, token=4) == Released()
    released = writer.close(RotationReason.SHUTDOWN)
    assert released.tokens == [1, 2, 3, 4]
    [entry] = released.files
    assert (entry.first_offset, entry.last_offset, entry.rows) == (1, 3, 2)


def test_redelivered_offsets_are_not_written_twice(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change(), token="first")
    assert writer.add(0, change(), token="again") == Released()  # held with the open file
    assert writer.buffered_rows == 1
    released = writer.close(RotationReason.SHUTDOWN)
    assert released.tokens == ["first", "again"] and released.files[0].rows == 1
    writer2 = make_writer(storage, manifest, clock, resume_after=0, partition=0)
    assert writer2.add(0, change(), token="old").tokens == ["old"]


def test_records_that_cannot_be_bronze_rows_raise_before_anything_changes(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change(), token="a")
    clash = pa.schema([pa.field("id", pa.int64()), pa.field("_op", pa.string())])
    with pytest.raises(DecodeError, match="collide"):
        writer.add(1, change(schema=clash, _op="x"))
    with pytest.raises(DecodeError, match="plain"):
        writer.add(1, change(table="shop.orders/../x"))
    assert writer.buffered_rows == 1 and writer.state is WriterState.BUFFERING
    assert writer.pass_over(1, token="dead").tokens == []
    assert writer.close(RotationReason.SHUTDOWN).tokens == ["a", "dead"]


def test_configuration_must_be_positive(storage, manifest, clock):
    with pytest.raises(ValueError):
        make_writer(storage, manifest, clock, flush_rows=0)


# -- offsets no record holds (transaction markers, aborted records) -------------------------------
# Kafka Connect's exactly-once producer commits transactions; the writer accounts for the marker
# offsets in the next file's entry, so the continuity check and silver see no hole.


def test_a_file_after_a_commit_marker_accounts_for_it(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock, flush_rows=2)
    writer.add(0, change("c", 1))
    [first] = writer.add(1, change("c", 2)).files
    # offset 2 is the transaction's commit marker: never delivered to a read_committed reader
    writer.add(3, change("c", 3))
    [second] = writer.add(4, change("c", 4)).files

    assert (first.accounted_from, second.accounted_from) == (None, 2)
    assert (second.first_offset, second.ranges()) == (3, [(2, 4)])
    [partition] = offset_continuity(manifest.entries())
    assert (partition.first_offset, partition.last_offset, partition.gaps) == (0, 4, ())


def test_markers_inside_a_file_need_nothing_new(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock, flush_rows=3)
    writer.add(0, change("c", 1))
    writer.add(2, change("c", 2))  # 1 was a marker
    [entry] = writer.add(4, change("c", 3)).files
    assert (entry.accounted_from, entry.ranges()) == (None, [(0, 4)])


def test_a_resumed_writer_accounts_from_the_manifests_last_offset(storage, manifest, clock):
    first = make_writer(storage, manifest, clock, flush_rows=1)
    [written] = first.add(0, change("c", 1)).files
    # restarted: the consumer resumes at offset 1 (a marker) and gets offset 2 first
    resumed = make_writer(storage, manifest, clock, flush_rows=1, resume_after=written.last_offset)
    [entry] = resumed.add(2, change("c", 2)).files
    assert entry.accounted_from == 1
    assert offset_continuity(manifest.entries())[0].gaps == ()


def test_a_fresh_writer_claims_nothing_before_its_first_record(storage, manifest, clock):
    # a lake started after topic retention: offsets below the first record are not bronze's
    writer = make_writer(storage, manifest, clock, flush_rows=1)
    [entry] = writer.add(1000, change("c", 1)).files
    assert (entry.accounted_from, entry.ranges()) == (None, [(1000, 1000)])


def test_a_real_hole_still_fails_the_check(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock, flush_rows=1)
    [a] = writer.add(0, change("c", 1)).files
    [b] = writer.add(2, change("c", 2)).files
    lost = dataclasses.replace(b, accounted_from=None)  # as if nothing vouched for offset 1
    [partition] = offset_continuity([a, lost])
    assert [(g.offsets.first, g.offsets.last) for g in partition.gaps] == [(1, 1)]


def test_silver_counts_a_files_markers_as_consumed(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock, flush_rows=2)
    writer.add(0, change("c", 1))
    writer.add(1, change("c", 2))
    writer.add(3, change("c", 3))
    [entry] = writer.add(5, change("c", 4)).files  # markers at 2 and 4
    consumed = ConsumedOffsets()
    consumed.add_entries([entry])
    assert consumed.covers_entry(entry)
    assert consumed.ranges[(entry.topic, entry.partition)] == [(2, 5)]

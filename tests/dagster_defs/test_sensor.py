"""The manifest sensor against a real manifest: partitions, metadata, cursor."""

import shutil

import dagster as dg
import pytest

from binlake.settings import load_settings
from dagster_defs.bronze.sensors import MANIFEST_SENSOR_NAME, parse_cursor
from dagster_defs.definitions import build_definitions
from dagster_defs.keys import bronze_key
from dagster_defs.resources import CONSUMER_LAG
from tests.support.resources import consumer_lag


@pytest.fixture
def tick(settings, resources):
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def(MANIFEST_SENSOR_NAME)

    def run(cursor: str | None) -> dg.SensorResult:
        with dg.DagsterInstance.ephemeral() as instance:
            context = dg.build_sensor_context(
                instance=instance, cursor=cursor, resources=resources()
            )
            return sensor(context)

    return run


def test_sensor_settings(settings):
    sensor = build_definitions(settings).resolve_sensor_def(MANIFEST_SENSOR_NAME)
    assert sensor.minimum_interval_seconds == settings.dagster.sensor_interval_seconds
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_first_tick_reports_each_entry_then_nothing_then_new_entries(bronze, tick):
    ten = bronze.base_ts_ms
    eleven = ten + 3600 * 1000
    first = bronze.write("shop.orders", [bronze.change("c", 0, id=1, status="new")])
    second = bronze.write(
        "shop.orders",
        [bronze.change("u", 1, ts_ms=eleven, id=1), bronze.change("u", 2, ts_ms=eleven, id=1)],
    )
    third = bronze.write("shop.customers", [bronze.change("r", 0, id=7, name="Ada")])

    result = tick(None)
    events = result.asset_events
    assert [(e.asset_key, e.partition) for e in events] == [
        (bronze_key("shop.orders"), "2024-06-01-10:00"),
        (bronze_key("shop.orders"), "2024-06-01-11:00"),
        (bronze_key("shop.customers"), "2024-06-01-10:00"),
    ]
    cursor = bronze.manifest.read_since(0)[1]
    assert result.cursor == str(cursor)

    meta = events[1].metadata
    assert meta["topic"].value == "binlake.shop.orders"
    assert meta["partition"].value == 0
    assert meta["first_offset"].value == 1
    assert meta["last_offset"].value == 2
    assert meta["rows"].value == 2
    assert meta["path"].value == second.path
    assert meta["rotation_reason"].value == "rows"
    assert meta["written_at"].value == second.written_at
    assert meta["bytes"].value == second.bytes
    assert meta["max_source_ts"].value == eleven / 1000
    assert events[0].metadata["path"].value == first.path
    assert events[2].metadata["path"].value == third.path

    again = tick(result.cursor)
    assert again.asset_events == []
    assert again.cursor == result.cursor
    assert again.skip_reason is not None

    fourth = bronze.write("shop.products", [bronze.change("c", 5, id=3, sku="X")])
    later = tick(result.cursor)
    assert [(e.asset_key, e.metadata["path"].value) for e in later.asset_events] == [
        (bronze_key("shop.products"), fourth.path)
    ]
    assert int(later.cursor) > int(result.cursor)


def test_reported_files_carry_the_bronze_writers_consumer_lag(settings, bronze, resources):
    bronze.write("shop.orders", [bronze.change("c", 0, id=1, status="new")])
    bronze.write("shop.customers", [bronze.change("r", 0, id=7, name="Ada")])
    sensor = build_definitions(settings).resolve_sensor_def(MANIFEST_SENSOR_NAME)
    lag = consumer_lag(seconds={"shop.orders": 42.5}, records={"shop.orders": 17})
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(
            instance=instance, resources={**resources(), CONSUMER_LAG: lag}
        )
        orders, customers = sensor(context).asset_events
    meta = {k: v.value for k, v in orders.metadata.items()}
    assert (meta["lag_state"], meta["lag_records"], meta["lag_seconds"]) == ("ok", 17, 42.5)
    assert meta["lag_records_exact"] is True
    meta = {k: v.value for k, v in customers.metadata.items()}
    assert (meta["lag_state"], meta["lag_records"], meta["lag_seconds"]) == ("no topic", None, None)


def test_a_line_still_being_written_waits_for_the_next_tick(bronze, tick):
    bronze.write("shop.orders", [bronze.change("c", 0, id=1)])
    done = tick(None)
    path = bronze.storage.full_path(bronze.manifest.path)
    with open(path, "a") as manifest:
        manifest.write('{"table": "shop.orders", "topi')  # a writer mid-append
    result = tick(done.cursor)
    assert result.asset_events == []
    assert result.cursor == done.cursor


def logged(capsys: pytest.CaptureFixture) -> str:
    """What the sensor wrote through context.log (Dagster prints it to the console)."""
    out, err = capsys.readouterr()
    return out + err


def test_tables_not_in_settings_are_skipped_with_a_log_line(bronze, tick, capsys):
    # Written with settings that capture one more table than the sensor's settings.
    bronze.write("shop.orders", [bronze.change("c", 0, id=1)])
    bronze.write("shop.audit", [bronze.change("c", 0, id=1)], columns=[], primary_key=[])
    result = tick(None)
    assert [e.asset_key for e in result.asset_events] == [bronze_key("shop.orders")]
    assert result.cursor == str(bronze.manifest.read_since(0)[1])
    assert "skipped 1 bronze file(s) of shop.audit: not in settings.tables" in logged(capsys)


def test_hours_before_the_partitions_start_are_logged_not_reported(bronze, tick, capsys):
    old = bronze.base_ts_ms - 365 * 24 * 3600 * 1000  # 2023
    bronze.write("shop.orders", [bronze.change("c", 0, ts_ms=old, id=1)])
    bronze.write("shop.orders", [bronze.change("u", 1, id=1)])
    result = tick(None)
    assert [e.partition for e in result.asset_events] == ["2024-06-01-10:00"]
    text = logged(capsys)
    assert "outside the bronze partitions" in text
    assert "2023-06-02-10:00" in text


def test_a_replaced_lake_is_read_again_from_the_start(bronze, tick, capsys):
    bronze.write("shop.orders", [bronze.change("c", 0, id=1)])
    result = tick("999999")
    assert len(result.asset_events) == 1
    assert "less than the cursor" in logged(capsys)


def test_cursor_parsing():
    assert parse_cursor(None) == 0
    assert parse_cursor("") == 0
    assert parse_cursor("42") == 42
    with pytest.raises(ValueError):
        parse_cursor("abc")
    with pytest.raises(ValueError):
        parse_cursor("-1")


def test_partitions_include_the_current_hour(settings):
    spec = next(iter(build_definitions(settings).assets))
    partitions = spec.partitions_def
    assert partitions.get_first_partition_key() == "2024-01-01-00:00"
    now = dg.HourlyPartitionsDefinition(start_date="2024-01-01-00:00", end_offset=1)
    assert partitions.get_last_partition_key() == now.get_last_partition_key()


def test_partitions_start_comes_from_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("BINLAKE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("BINLAKE_DAGSTER__PARTITIONS_START", "2025-03-01-00:00")
    spec = next(iter(build_definitions(load_settings()).assets))
    assert spec.partitions_def.get_first_partition_key() == "2025-03-01-00:00"


def test_a_long_manifest_is_reported_over_several_capped_ticks(monkeypatch, bronze, resources):
    monkeypatch.setenv("BINLAKE_DAGSTER__SENSOR_MAX_FILES_PER_TICK", "2")
    settings = load_settings()
    for offset in range(5):
        bronze.write("shop.orders", [bronze.change("c", offset, id=offset, status="new")])
    sensor = build_definitions(settings).resolve_sensor_def(MANIFEST_SENSOR_NAME)
    cursor, per_tick = None, []
    with dg.DagsterInstance.ephemeral() as instance:
        for _ in range(4):
            context = dg.build_sensor_context(
                instance=instance, cursor=cursor, resources=resources()
            )
            result = sensor(context)
            per_tick.append(len(result.asset_events))
            cursor = result.cursor
    assert per_tick == [2, 2, 1, 0]


def test_compactions_and_retention_lines_are_not_reported_a_rewritten_lost_file_is(bronze, tick):
    """Compaction and retention bring silver no new row; a replay writing a lost file again
    under another name may (silver drops the offsets it has merged already)."""
    import dataclasses

    small = bronze.write("shop.orders", [bronze.change("c", 0, id=1, status="new")])
    cursor = tick(None).cursor
    compacted = dataclasses.replace(
        small,
        path=small.path + ".compacted",
        rotation_reason="compaction",
        supersedes=[small.path],
    )
    rewritten = dataclasses.replace(
        small,
        path=small.path + ".again",
        rotation_reason="bronze_boundary",
        supersedes=[compacted.path],
    )
    expired = dataclasses.replace(
        small,
        path="",
        rows=0,
        bytes=0,
        rotation_reason="retention",
        supersedes=[rewritten.path],
    )
    for entry in (compacted, rewritten, expired):
        bronze.manifest.append(entry)

    result = tick(cursor)

    assert [e.metadata["path"].value for e in result.asset_events] == [rewritten.path]


def test_a_byte_cursor_into_a_single_file_manifest_keeps_its_place(bronze, tick):
    ten = bronze.base_ts_ms
    written = [
        bronze.write("shop.orders", [bronze.change("c", offset, ts_ms=ten, id=offset)])
        for offset in range(3)
    ]
    # The lake as a version with a single-file manifest left it: the same entries, one a line.
    manifest_dir = bronze.storage.full_path("bronze/_manifest")
    shutil.rmtree(f"{manifest_dir}/log")
    lines = [(entry.to_json() + "\n").encode() for entry in written]
    bronze.storage.write_atomic("bronze/_manifest/manifest.jsonl", b"".join(lines))
    after_first = len(lines[0])  # what an old tick stored as its cursor

    result = tick(str(after_first))
    assert [e.metadata["path"].value for e in result.asset_events] == [
        written[1].path,
        written[2].path,
    ]
    assert result.cursor == str(sum(map(len, lines)))
    newer = bronze.write("shop.orders", [bronze.change("c", 3, ts_ms=ten, id=3)])  # migrates
    later = tick(result.cursor)
    assert [e.metadata["path"].value for e in later.asset_events] == [newer.path]

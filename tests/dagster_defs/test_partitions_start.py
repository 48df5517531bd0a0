"""Hourly partitions start where the lake's data starts (`dagster_defs.partitions_start`)."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pydantic
import pytest

from binlake.bronze.lake_start import LAKE_START_PATH
from binlake.settings import load_settings
from binlake.storage import LakeStorage
from dagster_defs.definitions import build_definitions
from dagster_defs.keys import CHANGED_ORDER_HOURS, GOLD_ORDERS_BY_HOUR_STATUS, bronze_key
from dagster_defs.silver.assets import build_silver_asset
from tests.support.lake import change

HOUR_MS = 3_600_000


@pytest.fixture
def settings(settings, monkeypatch):
    """The shared settings without their fixed partitions start: the default, derived."""
    monkeypatch.delenv("BINLAKE_DAGSTER__PARTITIONS_START")
    return load_settings()


def first_partition(settings, key: dg.AssetKey) -> str:
    partitions = build_definitions(settings).resolve_asset_graph().get(key).partitions_def
    assert isinstance(partitions, dg.TimeWindowPartitionsDefinition)
    return partitions.get_first_partition_key()


def order(offset: int, id: int, created: datetime, ts_ms: int) -> dict:
    return change(
        "c",
        offset,
        ts_ms=ts_ms,
        id=id,
        customer_id=1,
        status="new",
        created_at=created,
        updated_at=created,
    )


def test_partitions_start_at_the_first_bronze_hour(settings, bronze, resources):
    t0 = bronze.base_ts_ms  # 2024-06-01 10:00 UTC
    # orders created before the lake started (a snapshot of a source with history)
    bronze.write("shop.orders", [order(0, 1, datetime(2024, 5, 30, 7, 15), t0)])
    bronze.write("shop.orders", [order(1, 2, datetime(2024, 6, 1, 12, 5), t0 + 2 * HOUR_MS)])
    storage = LakeStorage.from_settings(settings)
    assert json.loads(storage.read_bytes(LAKE_START_PATH)) == {"first_hour": "2024-06-01-10:00"}

    assert first_partition(settings, bronze_key("shop.orders")) == "2024-06-01-10:00"
    # gold's hours are order creation hours: before silver has orders any hour may come
    assert first_partition(settings, GOLD_ORDERS_BY_HOUR_STATUS) == "2024-01-01-00:00"
    assert dg.materialize(
        [build_silver_asset("shop.orders", settings)], resources=resources()
    ).success
    assert first_partition(settings, GOLD_ORDERS_BY_HOUR_STATUS) == "2024-05-30-07:00"
    assert first_partition(settings, CHANGED_ORDER_HOURS) == "2024-05-30-07:00"


def test_the_marker_is_written_once_and_an_old_lake_falls_back_to_its_manifest(settings, bronze):
    t0 = bronze.base_ts_ms
    bronze.write("shop.orders", [order(0, 1, datetime(2024, 6, 1, 10), t0 + 5 * HOUR_MS)])
    storage = LakeStorage.from_settings(settings)
    storage.filesystem.delete_file(storage.full_path(LAKE_START_PATH))  # a lake from before it
    assert first_partition(settings, bronze_key("shop.orders")) == "2024-06-01-15:00"
    # the next commit (a new writer) records the earliest hour the manifest lists, once
    type(bronze)(settings).write("shop.orders", [order(1, 2, datetime(2024, 6, 1), t0)])
    assert json.loads(storage.read_bytes(LAKE_START_PATH)) == {"first_hour": "2024-06-01-10:00"}
    type(bronze)(settings).write("shop.orders", [order(2, 3, datetime(2024, 6, 1), t0 - HOUR_MS)])
    assert json.loads(storage.read_bytes(LAKE_START_PATH)) == {"first_hour": "2024-06-01-10:00"}


def test_an_empty_lake_starts_a_week_back_and_a_setting_wins(settings, monkeypatch):
    def week_back() -> str:
        return (datetime.now(UTC) - timedelta(days=7)).strftime("%Y-%m-%d-%H:00")

    before = week_back()
    start = first_partition(settings, bronze_key("shop.orders"))
    assert before <= start <= week_back()

    monkeypatch.setenv("BINLAKE_DAGSTER__PARTITIONS_START", "2025-03-01-00:00")
    explicit = load_settings()
    assert first_partition(explicit, bronze_key("shop.orders")) == "2025-03-01-00:00"
    assert first_partition(explicit, GOLD_ORDERS_BY_HOUR_STATUS) == "2025-03-01-00:00"


def test_a_bad_partitions_start_names_the_value(settings, monkeypatch):
    monkeypatch.setenv("BINLAKE_DAGSTER__PARTITIONS_START", "2025-03-01")
    with pytest.raises(pydantic.ValidationError, match="partitions_start '2025-03-01' is not"):
        load_settings()

"""Which gold hours a silver update touched: the pure mapping and the sensor reporting them."""

import json
from datetime import datetime

import dagster as dg
import polars as pl
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from binlake.gold.changed_hours import changed_order_hours, item_order_ids
from binlake.silver.tables import silver_table_uri
from dagster_defs.definitions import build_definitions
from dagster_defs.gold.sensors import CHANGED_HOURS_SENSOR_NAME, parse_cursor
from dagster_defs.keys import CHANGED_ORDER_HOURS, GOLD_ORDERS_BY_HOUR_STATUS, silver_key
from dagster_defs.resources import SilverLake


def at(hour: int, minute: int = 0, day: int = 1) -> datetime:
    return datetime(2024, 6, day, hour, minute)


def orders(*rows: tuple[int, datetime | None]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={"id": pl.Int64, "created_at": pl.Datetime("us")}, orient="row"
    )


def items(*order_ids: int | None) -> pl.DataFrame:
    return pl.DataFrame({"order_id": list(order_ids)}, schema={"order_id": pl.Int64})


def test_an_order_touches_its_hour_before_and_after_the_change():
    # pre- and post-image of order 1 moved from 10:xx to 11:xx; a tombstone has no time
    changes = orders((1, at(10, 5)), (1, at(11, 30)), (2, None))
    assert changed_order_hours(changes, pl.DataFrame(), pl.DataFrame()) == [at(10), at(11)]


def test_an_item_touches_its_orders_hour_also_a_deleted_orders():
    current = orders((7, at(9, 59)))
    deleted_order_pre_image = orders((8, at(3, 0, day=2)))
    hours = changed_order_hours(deleted_order_pre_image, items(7, 8, None), current)
    assert hours == [at(9), at(3, day=2)]


def test_an_item_of_an_order_not_in_silver_yet_touches_nothing():
    assert changed_order_hours(pl.DataFrame(), items(99), orders((1, at(1)))) == []
    assert item_order_ids(items(3, None, 3, 1)) == [1, 3]
    assert item_order_ids(pl.DataFrame()) == []


def test_cursor_is_validated():
    assert parse_cursor(None) == {}
    assert parse_cursor('{"shop.orders": 3, "shop.order_items": null, "gold_store": "delta"}') == {
        "shop.orders": 3,
        "shop.order_items": None,
    }
    # kept while gold was Parquet files: read everything again, so Delta gets every hour
    assert parse_cursor('{"shop.orders": 3, "shop.order_items": 1}') == {}
    with pytest.raises(ValueError, match="not JSON"):
        parse_cursor("{12")
    with pytest.raises(ValueError, match="table: version"):
        parse_cursor('{"shop.orders": "3"}')


@pytest.fixture
def tick(settings, resources):
    sensor = build_definitions(settings).resolve_sensor_def(CHANGED_HOURS_SENSOR_NAME)

    def run(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources())
        return sensor(context)

    return run


def merge_silver(settings, resources, instance) -> None:
    defs = build_definitions(settings)
    result = dg.materialize(
        defs.assets,
        resources=resources(),
        instance=instance,
        selection=[silver_key("shop.orders"), silver_key("shop.order_items")],
    )
    assert result.success


def order_row(bronze, offset, id, created, status="new", op="c"):
    return bronze.change(op, offset, id=id, status=status, created_at=created, updated_at=created)


def test_sensor_reports_changed_hours_then_only_new_ones(settings, bronze, resources, tick):
    with dg.DagsterInstance.ephemeral() as instance:
        assert tick(instance, None).skip_reason is not None, "no silver yet"
        bronze.write(
            "shop.orders", [order_row(bronze, 0, 1, at(10, 5)), order_row(bronze, 1, 2, at(12))]
        )
        bronze.write("shop.order_items", [bronze.change("c", 0, id=5, order_id=1, quantity=1)])
        merge_silver(settings, resources, instance)
        first = tick(instance, None)
        assert {e.partition for e in first.asset_events} == {"2024-06-01-10:00", "2024-06-01-12:00"}
        assert all(e.asset_key == CHANGED_ORDER_HOURS for e in first.asset_events)
        assert json.loads(first.cursor) == {
            "shop.orders": 0,
            "shop.order_items": 0,
            "gold_store": "delta",
        }

        again = tick(instance, first.cursor)
        assert again.skip_reason is not None and not again.asset_events
        # a cursor kept while gold was Parquet files: every hour again, for the new Delta table
        upgraded = tick(instance, '{"shop.orders": 0, "shop.order_items": 0}')
        assert {e.partition for e in upgraded.asset_events} == {
            "2024-06-01-10:00",
            "2024-06-01-12:00",
        }

        # order 2 deleted: its pre-image still names 12:00
        bronze.write("shop.orders", [order_row(bronze, 2, 2, at(12), op="d")])
        merge_silver(settings, resources, instance)
        deleted = tick(instance, first.cursor)
        assert {e.partition for e in deleted.asset_events} == {"2024-06-01-12:00"}


def test_hours_before_the_partitions_start_are_logged_not_reported(
    settings, bronze, resources, tick, capsys
):
    bronze.write("shop.orders", [order_row(bronze, 0, 1, datetime(2019, 5, 1, 8))])
    bronze.write("shop.order_items", [bronze.change("c", 0, id=5, order_id=1, quantity=1)])
    with dg.DagsterInstance.ephemeral() as instance:
        merge_silver(settings, resources, instance)
        result = tick(instance, None)
    assert result.asset_events == []
    logged = capsys.readouterr().err
    assert "2019-05-01-08:00" in logged and "partitions_start" in logged


def test_a_table_without_change_feed_recomputes_every_stored_hour(
    settings, bronze, resources, tick
):
    """Silver written before the change feed existed: its changes since the cursor are unknown,
    so every hour gold holds is recomputed besides the current ones."""
    with dg.DagsterInstance.ephemeral() as instance:
        bronze.write("shop.order_items", [bronze.change("c", 0, id=5, order_id=1, quantity=1)])
        merge_silver(settings, resources, instance)
        uri = silver_table_uri(settings.lake_url, "shop.orders")
        frame = pa.table(
            {
                "id": [1],
                "created_at": [at(10, 5)],
                "_source_ts_ms": [1],
                "_offset": [0],
                "_op": ["c"],
                "_deleted": [False],
            }
        )
        write_deltalake(uri, frame)  # no enableChangeDataFeed
        write_deltalake(uri, frame, mode="append")
        instance.report_runless_asset_event(
            dg.AssetMaterialization(GOLD_ORDERS_BY_HOUR_STATUS, partition="2024-06-01-07:00")
        )
        assert (
            SilverLake(storage_url=settings.lake_url).table("shop.orders").changes_since(0) is None
        )
        result = tick(instance, json.dumps({"shop.orders": 0, "shop.order_items": 0}))
        assert {e.partition for e in result.asset_events} == {
            "2024-06-01-07:00",
            "2024-06-01-10:00",
        }

"""Eager automation on a real ephemeral instance: bronze reports -> silver (+ check) -> gold.

`evaluate_automation_conditions` only decides; the tests then do what the daemon's run would do
(`dg.materialize` of the requested keys) before the next tick.
"""

from datetime import datetime

import dagster as dg
import pytest

from dagster_defs.bronze.continuity import CONTINUITY_CHECK
from dagster_defs.bronze.sensors import MANIFEST_SENSOR_NAME
from dagster_defs.definitions import build_definitions
from dagster_defs.gold.sensors import CHANGED_HOURS_SENSOR_NAME
from dagster_defs.keys import GOLD_ORDERS_BY_HOUR_STATUS, bronze_key, silver_key
from dagster_defs.read import read_layer_table
from dagster_defs.silver.checks import RECONCILE_CHECK

ORDERS = silver_key("shop.orders")
ORDER_ITEMS = silver_key("shop.order_items")
ORDERS_CHECK = dg.AssetCheckKey(ORDERS, RECONCILE_CHECK)
BRONZE_ORDERS_SCHEMA_CHECK = dg.AssetCheckKey(
    bronze_key("shop.orders"), "schema_versions_compatible"
)
BRONZE_ORDERS_CONTINUITY_CHECK = dg.AssetCheckKey(bronze_key("shop.orders"), CONTINUITY_CHECK)
SILVER_ORDERS_SCHEMA_CHECK = dg.AssetCheckKey(ORDERS, "schema_versions_compatible")


def requested(result: dg.EvaluateAutomationConditionsResult) -> set:
    return {r.key for r in result.results if r.true_subset.size > 0}


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def lake(settings, bronze, instance, resources):
    """Definitions plus the two things the daemon does: sensor ticks and requested runs."""
    defs = build_definitions(settings)

    class Lake:
        cursor: str | None = None
        hours_cursor: str | None = None
        gold_hours: set[str] = set()  # noqa: RUF012 - per instance, set by automation_tick

        def __init__(self):
            self.defs = defs
            self.settings = settings
            self.tick_cursor = None

        def sensor_tick(self) -> int:
            sensor = defs.resolve_sensor_def(MANIFEST_SENSOR_NAME)
            context = dg.build_sensor_context(
                instance=instance, cursor=self.cursor, resources=resources()
            )
            result = sensor(context)
            for event in result.asset_events:  # the sensor daemon stores them like this
                instance.report_runless_asset_event(event)
            self.cursor = result.cursor
            return len(result.asset_events)

        def hours_tick(self) -> set[str]:
            """The gold changed-hours sensor's tick: the hours it reported."""
            sensor = defs.resolve_sensor_def(CHANGED_HOURS_SENSOR_NAME)
            context = dg.build_sensor_context(
                instance=instance, cursor=self.hours_cursor, resources=resources()
            )
            result = sensor(context)
            for event in result.asset_events:
                instance.report_runless_asset_event(event)
            self.hours_cursor = result.cursor
            return {event.partition for event in result.asset_events}

        def automation_tick(self) -> set:
            result = dg.evaluate_automation_conditions(
                defs=defs, instance=instance, cursor=self.tick_cursor
            )
            self.tick_cursor = result.cursor
            self.gold_hours = {
                key
                for r in result.results
                if r.key == GOLD_ORDERS_BY_HOUR_STATUS
                for key in r.true_subset.expensively_compute_partition_keys()
            }
            return requested(result)

        def run(self, keys: set) -> None:
            """What the daemon's runs do: unpartitioned keys in one run, gold per hour."""
            assets = [k for k in keys if isinstance(k, dg.AssetKey)]
            checks = [k for k in keys if isinstance(k, dg.AssetCheckKey)]
            if GOLD_ORDERS_BY_HOUR_STATUS in assets:
                assets.remove(GOLD_ORDERS_BY_HOUR_STATUS)
            if assets or checks:
                self._materialize(
                    dg.AssetSelection.assets(*assets) | dg.AssetSelection.checks(*checks)
                )
            for hour in sorted(self.gold_hours) if GOLD_ORDERS_BY_HOUR_STATUS in keys else []:
                self._materialize(dg.AssetSelection.assets(GOLD_ORDERS_BY_HOUR_STATUS), hour)

        def _materialize(self, selection: dg.AssetSelection, partition: str | None = None):
            result = dg.materialize(
                [*self.defs.assets, *self.defs.asset_checks],
                resources=resources({"shop.orders": 1, "shop.order_items": 1}),
                instance=instance,
                selection=selection,
                partition_key=partition,
            )
            assert result.success

    return Lake()


def test_silver_runs_when_a_bronze_hour_is_reported(lake, bronze, instance):
    assert lake.automation_tick() == set(), "nothing runs on an empty lake"

    bronze.write("shop.orders", [bronze.change("c", 0, id=1, status="new")])
    assert lake.sensor_tick() == 1
    # Only the hour that got a file is materialized; every other hour of bronze is missing, and
    # plain eager() would wait for them forever.
    assert instance.get_materialized_partitions(bronze_key("shop.orders")) == {"2024-06-01-10:00"}

    wanted = lake.automation_tick()
    assert wanted == {
        ORDERS,
        ORDERS_CHECK,
        BRONZE_ORDERS_SCHEMA_CHECK,
        BRONZE_ORDERS_CONTINUITY_CHECK,
        SILVER_ORDERS_SCHEMA_CHECK,
    }
    lake.run(wanted)

    assert lake.automation_tick() == set(), "handled: nothing new until bronze grows"


def test_bronze_reported_before_the_first_automation_tick_is_not_lost(lake, bronze):
    bronze.write("shop.orders", [bronze.change("c", 0, id=1, status="new")])
    lake.sensor_tick()
    assert ORDERS in lake.automation_tick()


def test_late_file_in_an_older_hour_requests_silver_again(lake, bronze, instance):
    bronze.write("shop.orders", [bronze.change("c", 0, id=1, status="new")])
    lake.sensor_tick()
    lake.run(lake.automation_tick())
    assert lake.automation_tick() == set()

    two_hours_earlier = bronze.base_ts_ms - 2 * 3600 * 1000
    bronze.write(
        "shop.orders", [bronze.change("u", 1, ts_ms=two_hours_earlier, id=1, status="paid")]
    )
    assert lake.sensor_tick() == 1
    assert instance.get_materialized_partitions(bronze_key("shop.orders")) == {
        "2024-06-01-08:00",
        "2024-06-01-10:00",
    }
    assert ORDERS in lake.automation_tick()


def order(bronze, op: str, offset: int, id: int, created_hour: int):
    created = datetime(2024, 6, 1, created_hour, 5)
    return bronze.change(op, offset, id=id, status="new", created_at=created, updated_at=created)


def both_silvers(lake, bronze, orders: list) -> None:
    """Silver orders and order items stored, as automation does them."""
    bronze.write("shop.orders", orders)
    bronze.write("shop.order_items", [bronze.change("c", 0, id=10, order_id=1, quantity=1)])
    lake.sensor_tick()
    wanted = lake.automation_tick()
    assert {ORDERS, ORDER_ITEMS} <= wanted
    lake.run(wanted - {GOLD_ORDERS_BY_HOUR_STATUS})


def test_gold_recomputes_the_hours_silver_changes_touched(lake, bronze, instance):
    both_silvers(lake, bronze, [order(bronze, "c", 0, 1, 10), order(bronze, "c", 1, 2, 12)])
    assert lake.hours_tick() == {"2024-06-01-10:00", "2024-06-01-12:00"}
    wanted = lake.automation_tick()
    assert GOLD_ORDERS_BY_HOUR_STATUS in wanted
    # 11:00 had no order: never reported, missing, and it holds back neither neighbour; nor
    # do the thousands of earlier hours since dagster.partitions_start.
    assert lake.gold_hours == {"2024-06-01-10:00", "2024-06-01-12:00"}
    lake.run(wanted)
    assert lake.automation_tick() == set()
    assert instance.get_materialized_partitions(GOLD_ORDERS_BY_HOUR_STATUS) == {
        "2024-06-01-10:00",
        "2024-06-01-12:00",
    }


def test_a_late_change_to_an_old_hour_recomputes_that_hour_only(lake, bronze, instance):
    both_silvers(lake, bronze, [order(bronze, "c", 0, 1, 10), order(bronze, "c", 1, 2, 12)])
    lake.hours_tick()
    lake.run(lake.automation_tick())
    assert lake.automation_tick() == set()

    # Committed hours later (a later bronze hour), for the order created at 10:05; the newest
    # gold partition is the current hour of the wall clock, so plain eager() ignores it.
    later = bronze.base_ts_ms + 5 * 3600 * 1000
    bronze.write(
        "shop.orders",
        [
            bronze.change(
                "u",
                2,
                ts_ms=later,
                id=1,
                status="paid",
                created_at=datetime(2024, 6, 1, 10, 5),
                updated_at=datetime(2024, 6, 1, 15, 0),
            )
        ],
    )
    lake.sensor_tick()
    wanted = lake.automation_tick()
    assert ORDERS in wanted and GOLD_ORDERS_BY_HOUR_STATUS not in wanted, "silver first"
    lake.run(wanted)
    assert lake.automation_tick() == set(), "a silver update alone requests no gold hour"
    assert lake.hours_tick() == {"2024-06-01-10:00"}
    assert GOLD_ORDERS_BY_HOUR_STATUS in lake.automation_tick()
    assert lake.gold_hours == {"2024-06-01-10:00"}
    lake.run({GOLD_ORDERS_BY_HOUR_STATUS})
    gold = read_layer_table(lake.settings, GOLD_ORDERS_BY_HOUR_STATUS).sort("hour")
    assert gold.select("status", "orders").rows() == [("paid", 1), ("new", 1)]


def test_an_item_change_recomputes_its_orders_hour(lake, bronze):
    both_silvers(lake, bronze, [order(bronze, "c", 0, 1, 10), order(bronze, "c", 1, 2, 12)])
    lake.hours_tick()
    lake.run(lake.automation_tick())
    bronze.write("shop.order_items", [bronze.change("c", 1, id=11, order_id=2, quantity=3)])
    lake.sensor_tick()
    lake.run(lake.automation_tick())
    assert lake.hours_tick() == {"2024-06-01-12:00"}


def test_automation_sensor_targets_everything(settings):
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("binlake_automation")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == settings.dagster.automation_interval_seconds

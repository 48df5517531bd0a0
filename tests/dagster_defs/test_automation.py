"""Eager automation on a real ephemeral instance: bronze reports -> silver (+ check) -> gold.

`evaluate_automation_conditions` only decides; the tests then do what the daemon's run would do
(`dg.materialize` of the requested keys) before the next tick.
"""

import dagster as dg
import pytest

from dagster_defs.bronze.continuity import CONTINUITY_CHECK
from dagster_defs.bronze.sensors import MANIFEST_SENSOR_NAME
from dagster_defs.definitions import build_definitions
from dagster_defs.keys import GOLD_ORDERS_BY_HOUR_STATUS, bronze_key, silver_key
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

        def __init__(self):
            self.defs = defs
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

        def automation_tick(self) -> set:
            result = dg.evaluate_automation_conditions(
                defs=defs, instance=instance, cursor=self.tick_cursor
            )
            self.tick_cursor = result.cursor
            return requested(result)

        def run(self, keys: set) -> None:
            assets = [k for k in keys if isinstance(k, dg.AssetKey)]
            checks = [k for k in keys if isinstance(k, dg.AssetCheckKey)]
            result = dg.materialize(
                [*self.defs.assets, *self.defs.asset_checks],
                resources=resources({"shop.orders": 1, "shop.order_items": 1}),
                instance=instance,
                selection=dg.AssetSelection.assets(*assets) | dg.AssetSelection.checks(*checks),
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


def test_gold_follows_once_both_silver_tables_exist(lake, bronze):
    bronze.write("shop.orders", [bronze.change("c", 0, id=1, status="new")])
    lake.sensor_tick()
    wanted = lake.automation_tick()
    assert ORDERS in wanted and GOLD_ORDERS_BY_HOUR_STATUS not in wanted
    lake.run(wanted)
    assert GOLD_ORDERS_BY_HOUR_STATUS not in lake.automation_tick(), "order_items missing"

    bronze.write("shop.order_items", [bronze.change("c", 0, id=10, order_id=1, quantity=1)])
    lake.sensor_tick()
    wanted = lake.automation_tick()
    # Requested together: the run materializes order_items, then gold from both tables.
    assert {ORDER_ITEMS, GOLD_ORDERS_BY_HOUR_STATUS} <= wanted
    lake.run(wanted)
    assert lake.automation_tick() == set()

    bronze.write("shop.orders", [bronze.change("u", 1, id=1, status="paid")])
    lake.sensor_tick()
    assert {ORDERS, GOLD_ORDERS_BY_HOUR_STATUS} <= lake.automation_tick()


def test_gold_runs_after_silver_materialized_outside_automation(lake, bronze):
    """Silver stored by a manual run (not requested by a tick) still makes gold follow."""
    bronze.write("shop.orders", [bronze.change("c", 0, id=1, status="new")])
    bronze.write("shop.order_items", [bronze.change("c", 0, id=10, order_id=1, quantity=1)])
    lake.sensor_tick()
    assert GOLD_ORDERS_BY_HOUR_STATUS in lake.automation_tick()  # with both silvers, same run
    lake.run({ORDERS, ORDER_ITEMS})
    assert GOLD_ORDERS_BY_HOUR_STATUS in lake.automation_tick()


def test_automation_sensor_targets_everything(settings):
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("binlake_automation")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == settings.dagster.automation_interval_seconds

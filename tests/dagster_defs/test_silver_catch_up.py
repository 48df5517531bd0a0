"""The silver catch-up sensor against a real manifest and real silver Delta tables."""

import dagster as dg

from binlake.settings import load_settings
from dagster_defs.keys import silver_history_key, silver_key
from dagster_defs.silver.assets import build_silver_asset
from dagster_defs.silver.history_assets import build_history_asset
from dagster_defs.silver.sensors import GRACE_SECONDS, build_silver_catch_up_sensor

WRITTEN_AT = 1717236000.5  # the conftest BronzeWriter's written_at


def tick(settings, resources, now: float) -> dg.SensorResult:
    sensor = build_silver_catch_up_sensor(settings, clock=lambda: now)
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources())
        return sensor(context)


def test_a_file_silver_missed_gets_one_run_request_after_the_grace_period(
    settings, bronze, resources
):
    c = bronze.change
    bronze.write("shop.orders", [c("c", 0, id=1, status="new")])
    dg.materialize([build_silver_asset("shop.orders", settings)], resources=resources())
    # merged: nothing to request
    assert not tick(settings, resources, WRITTEN_AT + 3600).run_requests
    # a file silver has not merged, e.g. reported while silver was finishing its run
    late = bronze.write("shop.orders", [c("u", 1, id=1, status="paid")])
    assert not tick(settings, resources, WRITTEN_AT + GRACE_SECONDS / 2).run_requests
    [request] = tick(settings, resources, WRITTEN_AT + GRACE_SECONDS + 1).run_requests
    assert request.asset_selection == [silver_key("shop.orders")]
    assert request.run_key == f"silver/shop/orders:{late.topic}:0:1"
    dg.materialize([build_silver_asset("shop.orders", settings)], resources=resources())
    assert not tick(settings, resources, WRITTEN_AT + 3600).run_requests


def test_tables_silver_never_ran_for_are_requested_too(settings, bronze, resources):
    bronze.write("shop.customers", [bronze.change("c", 0, id=1, name="Ada")])
    [request] = tick(settings, resources, WRITTEN_AT + 3600).run_requests
    assert request.asset_selection == [silver_key("shop.customers")]


def test_a_history_table_that_missed_a_file_is_requested_on_its_own(
    settings, bronze, resources, monkeypatch
):
    monkeypatch.setenv("BINLAKE_SILVER__HISTORY_TABLES", '["shop.orders"]')
    settings = load_settings()
    c = bronze.change
    bronze.write("shop.orders", [c("c", 0, id=1, status="new")])
    dg.materialize(
        [build_silver_asset("shop.orders", settings), build_history_asset("shop.orders", settings)],
        resources=resources(),
    )
    assert not tick(settings, resources, WRITTEN_AT + 3600).run_requests
    bronze.write("shop.orders", [c("u", 1, id=1, status="paid")])
    dg.materialize([build_silver_asset("shop.orders", settings)], resources=resources())

    [request] = tick(settings, resources, WRITTEN_AT + 3600).run_requests

    assert request.asset_selection == [silver_history_key("shop.orders")]

"""Gold orders_by_hour_status from silver orders and order_items, through the IO manager into
its Delta table."""

from datetime import datetime
from decimal import Decimal

import dagster as dg
import polars as pl
import pytest

from binlake.errors import FinalError
from binlake.gold.logic import orders_by_hour_status
from binlake.gold.tables import gold_table
from binlake.lake import read_gold
from binlake.settings import load_settings
from binlake.storage import LakeStorage
from dagster_defs.definitions import build_definitions
from dagster_defs.gold.assets import build_orders_by_hour_status_asset
from dagster_defs.keys import GOLD_ORDERS_BY_HOUR_STATUS, hourly_partitions, silver_key
from dagster_defs.read import read_layer_table
from dagster_defs.silver.assets import build_silver_asset
from tests.support.lake import change


def at(hour: int, minute: int) -> datetime:
    return datetime(2024, 6, 1, hour, minute)


def order(op, offset, id, customer, status, created, updated) -> dict:
    """A bronze change of shop.orders."""
    return change(
        op,
        offset,
        id=id,
        customer_id=customer,
        status=status,
        created_at=created,
        updated_at=updated,
    )


def write_shop(bronze) -> None:
    c = bronze.change
    bronze.write(
        "shop.orders",
        [
            order("c", 0, 1, 1, "new", at(10, 5), at(10, 5)),
            order("u", 1, 1, 1, "paid", at(10, 5), at(10, 9)),
            order("c", 2, 2, 1, "paid", at(10, 40), at(10, 40)),
            order("c", 3, 3, 2, "new", at(10, 50), at(10, 50)),
            order("c", 4, 4, 2, "paid", at(11, 10), at(11, 59)),
            order("c", 5, 5, 3, "new", at(11, 20), at(11, 20)),
            order("d", 6, 5, 3, "new", at(11, 20), at(11, 20)),
        ],
    )
    bronze.write(
        "shop.order_items",
        [
            c("c", 0, id=10, order_id=1, product_id=1, quantity=2, unit_price=Decimal("1.25")),
            c("c", 1, id=11, order_id=1, product_id=2, quantity=1, unit_price=Decimal("10.10")),
            c("c", 2, id=12, order_id=2, product_id=3, quantity=3, unit_price=Decimal("0.99")),
            c("c", 3, id=13, order_id=3, product_id=1, quantity=1, unit_price=Decimal("5.00")),
            c("c", 4, id=14, order_id=5, product_id=1, quantity=1, unit_price=Decimal("100.00")),
            c("c", 5, id=15, order_id=3, product_id=2, quantity=9, unit_price=Decimal("1.00")),
            c("d", 6, id=15, order_id=3, product_id=2, quantity=9, unit_price=Decimal("1.00")),
        ],
    )


def materialize_silver(settings, resources, instance) -> None:
    result = dg.materialize(
        [build_silver_asset(t, settings) for t in ("shop.orders", "shop.order_items")],
        resources=resources(),
        instance=instance,
    )
    assert result.success


def materialize_gold(settings, resources, instance, first: str, last: str) -> dict:
    """One run over the hours first..last, as automation requests a range (single-run policy)."""
    gold = build_orders_by_hour_status_asset(settings, hourly_partitions(settings))
    result = dg.materialize(
        [gold],
        resources=resources(),
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
    )
    assert result.success
    events = result.asset_materializations_for_node(gold.op.name)
    assert sorted(e.partition for e in events) == sorted(
        hourly_partitions(settings).get_partition_keys_in_range(dg.PartitionKeyRange(first, last))
    )
    return {k: v.value for k, v in events[0].metadata.items()}


def test_orders_by_hour_status(settings, bronze, resources):
    write_shop(bronze)
    with dg.DagsterInstance.ephemeral() as instance:
        materialize_silver(settings, resources, instance)
        metadata = materialize_gold(
            settings, resources, instance, "2024-06-01-09:00", "2024-06-01-11:00"
        )

    gold = read_layer_table(settings, ["gold", "shop", "orders_by_hour_status"])
    assert gold.schema == pl.Schema(
        {
            "hour": pl.Datetime("us"),
            "status": pl.String,
            "orders": pl.Int64,
            "revenue": pl.Decimal(18, 2),
            "items": pl.Int64,
            "_source_ts_ms": pl.Int64,
        }
    )
    # every hour's newest source commit among the silver rows it was computed from
    assert gold["_source_ts_ms"].to_list() == [bronze.base_ts_ms] * 3
    assert gold.drop("_source_ts_ms").sort("hour", "status").rows() == [
        (at(10, 0), "new", 1, Decimal("5.00"), 1),
        (at(10, 0), "paid", 2, Decimal("15.57"), 3),  # 2*1.25 + 10.10 + 3*0.99
        (at(11, 0), "paid", 1, Decimal("0.00"), 0),  # an order without items
    ]  # order 5 was deleted: neither it nor its item counts
    assert metadata["row_count"] == 3
    assert metadata["total_orders"] == 4
    assert metadata["total_items"] == 4
    assert metadata["total_revenue"] == "20.57"
    assert metadata["orders_max_updated_at"] == "2024-06-01T11:59:00"
    assert metadata["max_source_ts_ms"] == bronze.base_ts_ms  # newest commit read from silver


def test_a_partition_run_replaces_only_its_hour(settings, bronze, resources):
    write_shop(bronze)
    with dg.DagsterInstance.ephemeral() as instance:
        materialize_silver(settings, resources, instance)
        materialize_gold(settings, resources, instance, "2024-06-01-10:00", "2024-06-01-11:00")
        # order 4 (11:10) moves to 10:00 and order 2 is cancelled; only 10:00 is recomputed
        bronze.write(
            "shop.orders",
            [
                order("u", 7, 2, 1, "cancelled", at(10, 40), at(12, 0)),
                order("u", 8, 4, 2, "paid", at(10, 1), at(12, 1)),
            ],
        )
        materialize_silver(settings, resources, instance)
        materialize_gold(settings, resources, instance, "2024-06-01-10:00", "2024-06-01-10:00")
        gold = read_layer_table(settings, GOLD_ORDERS_BY_HOUR_STATUS).sort("hour", "status")
        assert gold.drop("_source_ts_ms").rows() == [
            (at(10, 0), "cancelled", 1, Decimal("2.97"), 1),
            (at(10, 0), "new", 1, Decimal("5.00"), 1),
            (at(10, 0), "paid", 2, Decimal("12.60"), 2),
            (at(11, 0), "paid", 1, Decimal("0.00"), 0),  # stale until 11:00 runs
        ]
        materialize_gold(settings, resources, instance, "2024-06-01-11:00", "2024-06-01-11:00")
        gold = read_layer_table(settings, GOLD_ORDERS_BY_HOUR_STATUS)
        assert gold["hour"].unique().to_list() == [at(10, 0)], "11:00 emptied, not left stale"
        # one Delta commit per run (a range of hours is replaced at once), time travel works
        assert read_gold("orders_by_hour_status", settings, as_of=0)[
            "hour"
        ].unique().sort().to_list() == [
            at(10, 0),
            at(11, 0),
        ]
        assert (
            gold_table(LakeStorage.from_settings(settings), "orders_by_hour_status").version() == 2
        )


def test_no_orders_gives_an_empty_table():
    orders = pl.DataFrame(
        schema={
            "id": pl.Int64,
            "status": pl.String,
            "created_at": pl.Datetime("us"),
            "updated_at": pl.Datetime("us"),
        }
    )
    items = pl.DataFrame(
        schema={"order_id": pl.Int64, "quantity": pl.Int32, "unit_price": pl.Decimal(10, 2)}
    )
    assert orders_by_hour_status(orders, items).height == 0


def test_missing_columns_are_a_clear_error():
    with pytest.raises(FinalError, match=r"shop.orders lacks column"):
        orders_by_hour_status(pl.DataFrame({"id": [1]}), pl.DataFrame())


def test_gold_only_with_orders_and_order_items(tmp_path, monkeypatch, settings):
    keys = build_definitions(settings).resolve_asset_graph().get_all_asset_keys()
    assert GOLD_ORDERS_BY_HOUR_STATUS in keys

    monkeypatch.setenv("BINLAKE_TABLES", '["shop.orders", "shop.customers"]')
    keys = build_definitions(load_settings()).resolve_asset_graph().get_all_asset_keys()
    assert GOLD_ORDERS_BY_HOUR_STATUS not in keys
    assert silver_key("shop.orders") in keys

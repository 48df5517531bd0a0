"""Silver (MERGE and SCD2 history), gold and a point-in-time rebuild with their Delta tables on a
real S3 server, value for value as the same runs give on local disk.

Bronze stays on local disk (its manifest is single-host until the object-store manifest lands);
only the silver resources point at s3://<bucket>/<prefix>, as `build_resources` does for an S3
`storage_url`.
"""

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from binlake.bronze.layout import OFFSET
from binlake.bronze.reader import BronzeReader
from binlake.settings import Settings
from binlake.silver.pii import PiiPolicy
from binlake.silver.rebuild import AsOf, rebuild_silver
from binlake.silver.tables import SilverTables
from binlake.storage import LakeStorage
from dagster_defs.gold.assets import build_orders_by_hour_status_asset
from dagster_defs.keys import GOLD_ORDERS_BY_HOUR_STATUS, hourly_partitions
from dagster_defs.resources import (
    LAKE_IO_MANAGER,
    SILVER_IO_MANAGER,
    SILVER_LAKE,
    LakeAccess,
    LakeParquetIOManager,
    SilverIOManager,
    SilverLake,
)
from dagster_defs.silver.assets import build_silver_asset
from dagster_defs.silver.history_assets import build_history_asset
from tests.support.s3_server import S3Lake

ORDERS, ITEMS = "shop.orders", "shop.order_items"
MINUTE_MS = 60_000


def at(hour: int, minute: int) -> datetime:
    return datetime(2024, 6, 1, hour, minute)


def write_shop(bronze) -> None:
    """Orders created, paid, one deleted, and their items: two files per table, a minute apart."""
    c, t0 = bronze.change, bronze.base_ts_ms

    def order(op, offset, id, status, created, updated, ts_ms=t0):
        return c(op, offset, ts_ms=ts_ms, id=id, customer_id=id % 2, status=status,
                 created_at=created, updated_at=updated)  # fmt: skip

    def item(op, offset, id, order_id, quantity, price, ts_ms=t0):
        return c(op, offset, ts_ms=ts_ms, id=id, order_id=order_id, product_id=1,
                 quantity=quantity, unit_price=Decimal(price))  # fmt: skip

    bronze.write(ORDERS, [
        order("c", 0, 1, "new", at(10, 5), at(10, 5)),
        order("c", 1, 2, "new", at(10, 40), at(10, 40)),
        order("c", 2, 3, "new", at(11, 10), at(11, 10)),
    ])  # fmt: skip
    bronze.write(ORDERS, [
        order("u", 3, 1, "paid", at(10, 5), at(10, 9), t0 + MINUTE_MS),
        order("d", 4, 2, "new", at(10, 40), at(10, 40), t0 + MINUTE_MS),
        order("c", 5, 4, "paid", at(11, 20), at(11, 20), t0 + MINUTE_MS),
    ])  # fmt: skip
    bronze.write(ITEMS, [
        item("c", 0, 10, 1, 2, "1.25"),
        item("c", 1, 11, 2, 1, "10.10"),
        item("c", 2, 12, 3, 3, "0.99"),
    ])  # fmt: skip
    bronze.write(ITEMS, [item("u", 3, 10, 1, 5, "1.25", t0 + MINUTE_MS)])


def s3_access(s3_lake: S3Lake) -> LakeAccess:
    return LakeAccess(
        endpoint_url=s3_lake.endpoint_url,
        region=s3_lake.region,
        access_key_id=s3_lake.access_key,
        secret_access_key=s3_lake.secret_key,
    )


def silver_on_s3(resources, s3_lake: S3Lake, gold_dir: Path) -> dict:
    """The code location's resources with silver on `s3_lake` and gold under `gold_dir`."""
    access = s3_access(s3_lake)
    return {
        **resources(),
        SILVER_LAKE: SilverLake(storage_url=s3_lake.storage_url, access=access),
        SILVER_IO_MANAGER: SilverIOManager(storage_url=s3_lake.storage_url, access=access),
        LAKE_IO_MANAGER: LakeParquetIOManager(base_dir=str(gold_dir)),
    }


def run_all(settings: Settings, resources: dict) -> dict[str, pl.DataFrame]:
    """Silver, history and gold over the shop, then every table each wrote, sorted."""
    partitions = hourly_partitions(settings)
    with dg.DagsterInstance.ephemeral() as instance:
        layers = [
            *(build_silver_asset(t, settings) for t in (ORDERS, ITEMS)),
            build_history_asset(ORDERS, settings),
        ]
        assert dg.materialize(layers, resources=resources, instance=instance).success
        gold = build_orders_by_hour_status_asset(settings, partitions)
        result = dg.materialize(
            [gold],
            resources=resources,
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": "2024-06-01-10:00",
                "dagster/asset_partition_range_end": "2024-06-01-11:00",
            },
        )
        assert result.success
    silver: SilverLake = resources[SILVER_LAKE]
    io_manager: LakeParquetIOManager = resources[LAKE_IO_MANAGER]
    gold_files = sorted(
        Path(io_manager.base_dir).joinpath(*GOLD_ORDERS_BY_HOUR_STATUS.path).glob("*")
    )
    return {
        "orders": silver.table(ORDERS).read_all().sort("id"),
        "order_items": silver.table(ITEMS).read_all().sort("id"),
        "orders_current": silver.table(ORDERS).read_current().sort("id"),
        "history": silver.history(ORDERS).read_all().sort("id", OFFSET),
        "gold": pl.concat([pl.read_parquet(f) for f in gold_files]).sort("hour", "status"),
    }


def test_silver_history_and_gold_on_s3_match_local_disk(
    settings, bronze, resources, s3_lake, tmp_path
) -> None:
    write_shop(bronze)

    on_disk = run_all(settings, resources())
    on_s3 = run_all(settings, silver_on_s3(resources, s3_lake, tmp_path / "gold-s3"))

    for name, frame in on_disk.items():
        assert frame.height > 0, name
        assert on_s3[name].equals(frame), name
    assert on_s3["gold"].select("hour", "status", "orders", "revenue", "items").rows() == [
        (at(10, 0), "paid", 1, Decimal("6.25"), 1),  # order 1: 5 x 1.25 after the update
        (at(11, 0), "new", 1, Decimal("2.97"), 1),
        (at(11, 0), "paid", 1, Decimal("0.00"), 0),
    ]
    # the Delta tables really are objects under the prefix, with their commit logs
    s3 = LakeStorage.from_url(s3_lake.storage_url, s3_lake.storage_options)
    for table in ("orders", "order_items", "orders__history"):
        assert s3.exists(f"silver/shop/{table}/_delta_log/00000000000000000000.json"), table


def test_a_rebuild_on_s3_matches_the_one_on_local_disk(settings, bronze, s3_lake) -> None:
    write_shop(bronze)
    as_of = AsOf(source_ts_ms=bronze.base_ts_ms + MINUTE_MS // 2)  # before the second files
    bronze_reader = BronzeReader(LakeStorage.from_settings(settings))
    pii = PiiPolicy.from_settings(settings.silver)
    s3_tables = SilverTables.of(LakeStorage.from_url(s3_lake.storage_url, s3_lake.storage_options))

    local = rebuild_silver(bronze_reader, SilverTables(settings.lake_url), pii, ORDERS, as_of)
    remote = rebuild_silver(bronze_reader, s3_tables, pii, ORDERS, as_of)

    assert remote.table.uri == f"{s3_lake.storage_url}/rebuilds/silver/shop/orders/{as_of.label}"
    rebuilt = remote.table.read_current().sort("id")
    assert rebuilt.equals(local.table.read_current().sort("id"))
    assert rebuilt.select("id", "status").rows() == [
        (1, "new"),
        (2, "new"),
        (3, "new"),
    ]
    assert (remote.rows, remote.changes_read) == (local.rows, local.changes_read)


@pytest.fixture(autouse=True)
def _no_aws_from_the_machine(monkeypatch) -> None:
    """The S3 runs use the test server's keys only, whatever the machine's AWS_* say."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)

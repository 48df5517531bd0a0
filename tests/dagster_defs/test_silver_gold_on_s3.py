"""Silver (MERGE and SCD2 history Delta tables), gold (Delta), a point-in-time rebuild and a
resync's sweep on a real S3 server, value for value as the same runs give on local disk.

Bronze is built on local disk here (bronze on S3, through the real broker and worker, is
tests/integration/test_bronze_on_s3_real_broker.py); the silver and gold resources are
`build_resources`' for settings whose lake is s3://<bucket>/<prefix>.
"""

from datetime import datetime
from decimal import Decimal

import dagster as dg
import polars as pl
import pytest

from binlake.bronze.layout import OFFSET, OP, SOURCE_SNAPSHOT
from binlake.bronze.reader import BronzeReader
from binlake.settings import Settings, StorageSettings
from binlake.silver.delta_table import DELETED
from binlake.silver.pii import PiiPolicy
from binlake.silver.rebuild import AsOf, rebuild_silver
from binlake.silver.resync import (
    INCREMENTAL,
    BinlogPosition,
    ResyncCompletion,
    ResyncLog,
    ResyncRequest,
)
from binlake.silver.tables import SilverTables
from binlake.storage import LakeStorage
from dagster_defs.gold.assets import build_orders_by_hour_status_asset
from dagster_defs.keys import GOLD_ORDERS_BY_HOUR_STATUS, hourly_partitions, silver_key
from dagster_defs.read import read_layer_table
from dagster_defs.resources import (
    LAKE_IO_MANAGER,
    SILVER_IO_MANAGER,
    SILVER_LAKE,
    SilverLake,
    build_resources,
    lake_access,
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


def settings_on_s3(settings: Settings, s3_lake: S3Lake) -> Settings:
    """`settings` with the lake on `s3_lake`, reached with its endpoint and keys."""
    storage = StorageSettings(
        endpoint_url=s3_lake.endpoint_url,
        region=s3_lake.region,
        access_key_id=s3_lake.access_key,
        secret_access_key=s3_lake.secret_key,
    )
    return settings.model_copy(update={"storage_url": s3_lake.storage_url, "storage": storage})


def silver_and_gold_of(resources: dict, settings: Settings) -> dict:
    """`resources` (bronze and the rest) with silver and gold in the lake of `settings`."""
    lake = build_resources(settings)
    return {
        **resources,
        **{key: lake[key] for key in (SILVER_LAKE, SILVER_IO_MANAGER, LAKE_IO_MANAGER)},
    }


def run_all(settings: Settings, resources: dict) -> dict[str, pl.DataFrame]:
    """Silver, history and gold over the shop, then every table each wrote (read back through
    `settings`' lake), sorted."""
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
    silver = SilverLake(storage_url=settings.lake_url, access=lake_access(settings))
    return {
        "orders": silver.table(ORDERS).read_all().sort("id"),
        "order_items": silver.table(ITEMS).read_all().sort("id"),
        "orders_current": read_layer_table(settings, silver_key(ORDERS)).sort("id"),
        "history": silver.history(ORDERS).read_all().sort("id", OFFSET),
        "gold": read_layer_table(settings, GOLD_ORDERS_BY_HOUR_STATUS).sort("hour", "status"),
    }


def test_silver_history_and_gold_on_s3_match_local_disk(
    settings, bronze, resources, s3_lake, tmp_path
) -> None:
    write_shop(bronze)

    on_disk = run_all(settings, resources())
    s3_settings = settings_on_s3(settings, s3_lake)
    on_s3 = run_all(s3_settings, silver_and_gold_of(resources(), s3_settings))

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
    assert s3.exists("gold/orders_by_hour_status/_delta_log/00000000000000000000.json")
    assert (tmp_path / "lake" / "gold" / "orders_by_hour_status" / "_delta_log").is_dir()


def test_a_rebuild_on_s3matches_the_one_on_local_disk(settings, bronze, s3_lake) -> None:
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


def test_a_resync_sweep_on_s3_tombstones_the_rows_the_resync_did_not_see(
    settings, bronze, resources, s3_lake
) -> None:
    """Rows 1..4 in silver on S3; a resync re-reads 1, 2 and 4 only: 3 becomes a tombstone.
    (The resync records live with bronze, so one lake's sweep is recorded once: the same
    scenario on disk is tests/dagster_defs/test_silver_resync_sweep.py.)"""
    c = bronze.change
    bronze.write(ORDERS, [c("c", i, id=i + 1, customer_id=10, status="new") for i in range(4)])
    lake = silver_and_gold_of(resources(), settings_on_s3(settings, s3_lake))
    asset = build_silver_asset(ORDERS, settings)
    assert dg.materialize([asset], resources=lake).success
    request = ResyncRequest(
        id="20261207T100000Z-abcdef01",
        table=ORDERS,
        reason="test",
        requested_at="2026-12-07T10:00:00+00:00",
        signal_position=BinlogPosition("mariadb-bin.000001", 2000),
        topic=settings.topic_for(ORDERS),
        start_offsets={0: 4},
    )
    ResyncLog.of(settings).record_request(request)
    reads = []
    for offset, id in ((4, 1), (5, 2), (6, 4)):
        row = c("r", offset, pos=2100, id=id, customer_id=10, status="new")
        row[SOURCE_SNAPSHOT] = INCREMENTAL
        reads.append(row)
    bronze.write(ORDERS, reads)
    ResyncLog.of(settings).record_completion(
        ResyncCompletion(
            id=request.id,
            table=ORDERS,
            completed_at="2026-12-07T10:01:00+00:00",
            status="SUCCEEDED",
            rows_scanned=3,
            end_offsets={0: 7},
        )
    )

    result = dg.materialize([asset], resources=lake)

    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["resyncs_swept"].value == request.id
    silver = lake[SILVER_LAKE].table(ORDERS).read_all().sort("id")
    assert silver.filter(~pl.col(DELETED))["id"].to_list() == [1, 2, 4]
    assert silver.filter(pl.col("id") == 3)[OP].to_list() == ["d"]
    assert ResyncLog.of(settings).state(ORDERS, request.id).sweep.rows_tombstoned == 1

"""The code location loads: assets, checks, sensors, resources; and the read helper."""

import os
from datetime import datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from binlake.gold.tables import gold_table
from binlake.silver.consumed import ConsumedOffsets
from binlake.storage import LakeStorage
from dagster_defs import definitions as root
from dagster_defs.read import read_layer_table
from dagster_defs.resources import (
    BRONZE_LAKE,
    LAKE_IO_MANAGER,
    MYSQL_SOURCE,
    BronzeLake,
    GoldIOManager,
    MySQLSource,
    SilverLake,
)
from tests.support.processes import run_python_module

TABLES = ["customers", "products", "orders", "order_items"]


def test_root_defs_are_lazy_and_load(settings):
    defs = root.defs()  # @dg.definitions: settings are read here, not at import
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        *(f"bronze/shop/{t}" for t in TABLES),
        *(f"silver/shop/{t}" for t in TABLES),
        "gold/shop/orders_by_hour_status",
        "gold/shop/changed_order_hours",
    }
    assert {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys} == {
        *((f"silver/shop/{t}", "reconciles_with_source") for t in TABLES),
        *((f"bronze/shop/{t}", "schema_versions_compatible") for t in TABLES),
        *((f"bronze/shop/{t}", "offsets_contiguous") for t in TABLES),
        *((f"bronze/shop/{t}", "freshness") for t in TABLES),
        *((f"silver/shop/{t}", "freshness") for t in TABLES),
        *((f"silver/shop/{t}", "schema_versions_compatible") for t in TABLES),
        ("gold/shop/orders_by_hour_status", "freshness"),
    }
    assert {s.name for s in defs.sensors} == {
        "bronze_manifest_sensor",
        "gold_changed_order_hours",
        "binlake_automation",
        "binlake_freshness",
        "silver_catch_up",
        "bronze_compaction_sensor",
        "connector_health",
        "run_failure_alerts",
        "resync_progress",
    }
    for table in TABLES:
        assert graph.get(dg.AssetKey(["bronze", "shop", table])).is_external
        silver = graph.get(dg.AssetKey(["silver", "shop", table]))
        assert silver.is_materializable
        assert silver.automation_condition is not None
        assert silver.tags["binlake/layer"] == "silver"
        assert silver.tags["binlake/table"] == f"shop.{table}"
        assert silver.pools == {f"silver/shop/{table}"}  # one writer per Delta table
    assert graph.get(dg.AssetKey(["bronze", "shop", "orders"])).partitions_def is not None
    assert graph.get(dg.AssetKey(["silver", "shop", "orders"])).partitions_def is None


def test_resources_are_configured_from_the_one_lake_url(settings):
    resources = root.build_definitions(settings).resources
    assert isinstance(resources[BRONZE_LAKE], BronzeLake)
    assert resources[BRONZE_LAKE].storage_url == settings.lake_url
    assert isinstance(resources[LAKE_IO_MANAGER], GoldIOManager)
    assert resources[LAKE_IO_MANAGER].storage_url == settings.lake_url
    assert isinstance(resources[MYSQL_SOURCE], MySQLSource)
    assert resources[MYSQL_SOURCE].port == settings.mysql.port


def test_mysql_password_from_environment_is_an_env_var(settings, monkeypatch):
    monkeypatch.setenv("BINLAKE_MYSQL__PASSWORD", "s3cret")
    source = root.build_definitions(settings).resources[MYSQL_SOURCE]
    assert isinstance(source.password, dg.EnvVar)  # the UI shows its name, not the secret


def test_dagster_loads_the_code_location_module(settings, tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    (tmp_path / "dagster_home").mkdir()
    done = run_python_module(
        "dagster", "definitions", "validate", "-m", "dagster_defs.definitions", env=env, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful" in done.stdout + done.stderr


def test_read_layer_table_uses_the_lake_locations(settings):
    # gold is the Delta table under <lake>/gold/<name>
    frame = pl.DataFrame(
        {"hour": [datetime(2024, 6, 1, 10)], "status": ["new"], "_source_ts_ms": [5]}
    )
    gold_table(LakeStorage.from_settings(settings), "orders_by_hour_status").replace_hours(
        frame, datetime(2024, 6, 1, 10), datetime(2024, 6, 1, 11)
    )
    assert (Path(settings.lake_url) / "gold" / "orders_by_hour_status" / "_delta_log").is_dir()
    gold = ["gold", "shop", "orders_by_hour_status"]
    assert read_layer_table(settings, gold).equals(frame)
    assert read_layer_table(settings, dg.AssetKey(gold)).equals(frame)
    # silver is the current state of the Delta table under <lake>/silver/<db>/<table>
    SilverLake(storage_url=settings.lake_url).table("shop.orders").merge(
        pl.DataFrame(
            {
                "id": [1, 2],
                "_source_file": ["f", "f"],
                "_source_pos": [1, 2],
                "_source_row": [0, 0],
                "_offset": [0, 1],
                "_source_ts_ms": [5, 6],
                "_op": ["c", "d"],
                "_deleted": [False, True],
            }
        ),
        ["id"],
        ConsumedOffsets(),
    )
    assert (Path(settings.lake_url) / "silver" / "shop" / "orders" / "_delta_log").is_dir()
    silver = read_layer_table(settings, ["silver", "shop", "orders"])
    assert silver.columns == ["id", "_source_ts_ms", "_offset", "_op"]
    assert silver["id"].to_list() == [1]


def test_read_layer_table_before_materialization(settings):
    with pytest.raises(FileNotFoundError, match="gold/orders_by_hour_status does not exist"):
        read_layer_table(settings, ["gold", "shop", "orders_by_hour_status"])

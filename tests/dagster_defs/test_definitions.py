"""The code location loads: assets, checks, sensors, resources; and the read helper."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from dagster_defs import definitions as root
from dagster_defs.read import read_layer_table
from dagster_defs.resources import (
    BRONZE_LAKE,
    LAKE_IO_MANAGER,
    MYSQL_SOURCE,
    BronzeLake,
    LakeParquetIOManager,
    MySQLSource,
)

REPO = Path(__file__).resolve().parents[2]

TABLES = ["customers", "products", "orders", "order_items"]


def test_root_defs_are_lazy_and_load(settings):
    defs = root.defs()  # @dg.definitions: settings are read here, not at import
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        *(f"bronze/shop/{t}" for t in TABLES),
        *(f"silver/shop/{t}" for t in TABLES),
        "gold/shop/orders_by_hour_status",
    }
    assert {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys} == {
        *((f"silver/shop/{t}", "row_count_matches_source") for t in TABLES),
        *((f"bronze/shop/{t}", "schema_versions_compatible") for t in TABLES),
    }
    assert {s.name for s in defs.sensors} == {"bronze_manifest_sensor", "binlake_automation"}
    for table in TABLES:
        assert graph.get(dg.AssetKey(["bronze", "shop", table])).is_external
        silver = graph.get(dg.AssetKey(["silver", "shop", table]))
        assert silver.is_materializable
        assert silver.automation_condition is not None
        assert silver.tags["binlake/layer"] == "silver"
        assert silver.tags["binlake/table"] == f"shop.{table}"
    assert graph.get(dg.AssetKey(["bronze", "shop", "orders"])).partitions_def is not None
    assert graph.get(dg.AssetKey(["silver", "shop", "orders"])).partitions_def is None


def test_resources_are_configured_from_the_one_lake_url(settings):
    resources = root.build_definitions(settings).resources
    assert isinstance(resources[BRONZE_LAKE], BronzeLake)
    assert resources[BRONZE_LAKE].storage_url == settings.lake_url
    assert isinstance(resources[LAKE_IO_MANAGER], LakeParquetIOManager)
    assert resources[LAKE_IO_MANAGER].base_dir == settings.lake_url
    assert isinstance(resources[MYSQL_SOURCE], MySQLSource)
    assert resources[MYSQL_SOURCE].port == settings.mysql.port


def test_mysql_password_from_environment_is_an_env_var(settings, monkeypatch):
    monkeypatch.setenv("BINLAKE_MYSQL__PASSWORD", "s3cret")
    source = root.build_definitions(settings).resources[MYSQL_SOURCE]
    assert isinstance(source.password, dg.EnvVar)  # the UI shows its name, not the secret


def test_dagster_loads_the_code_location_module(settings, tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    (tmp_path / "dagster_home").mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "definitions",
            "validate",
            "-m",
            "dagster_defs.definitions",
        ],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful" in done.stdout + done.stderr


def test_read_layer_table_uses_the_io_manager_location(settings):
    frame = pl.DataFrame({"id": [1, 2], "status": ["new", "paid"]})
    path = Path(settings.lake_url) / "silver" / "shop" / "orders.parquet"
    path.parent.mkdir(parents=True)
    frame.write_parquet(path)
    assert read_layer_table(settings, ["silver", "shop", "orders"]).equals(frame)
    assert read_layer_table(settings, dg.AssetKey(["silver", "shop", "orders"])).equals(frame)


def test_read_layer_table_before_materialization(settings):
    with pytest.raises(FileNotFoundError, match="gold/shop/orders_by_hour_status"):
        read_layer_table(settings, ["gold", "shop", "orders_by_hour_status"])

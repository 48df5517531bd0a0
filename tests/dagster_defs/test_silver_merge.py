"""Silver as a Delta table updated by MERGE, run after run, from real bronze files."""

import dagster as dg
import polars as pl
import pyarrow as pa

from binlake.bronze.layout import OFFSET
from binlake.settings import load_settings
from binlake.silver.delta_table import DELETED
from dagster_defs.keys import silver_key
from dagster_defs.read import read_layer_table
from dagster_defs.resources import SilverLake
from dagster_defs.silver.assets import build_silver_asset
from tests.support.lake import KEYLESS_TABLE, assert_no_file_holds


def run_silver(settings, resources, table="shop.orders", instance=None):
    result = dg.materialize(
        [build_silver_asset(table, settings)],
        resources=resources(),
        instance=instance or dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def rows(frame: pl.DataFrame, *columns: str) -> list[tuple]:
    return [tuple(r) for r in frame.sort(columns[0]).select(columns).iter_rows()]


def test_each_run_merges_only_new_bronze_files(settings, bronze, resources):
    c = bronze.change
    bronze.write("shop.orders", [c("c", 0, id=1, status="new"), c("c", 1, id=2, status="new")])
    first = run_silver(settings, resources)
    assert (first["bronze_files_read"], first["keys_merged"], first["delta_version"]) == (1, 2, 0)

    bronze.write("shop.orders", [c("u", 2, id=1, status="paid"), c("c", 3, id=3, status="new")])
    second = run_silver(settings, resources)
    assert (second["bronze_files_read"], second["keys_merged"], second["delta_version"]) == (
        1,
        2,
        1,
    )
    silver = read_layer_table(settings, silver_key("shop.orders"))
    assert rows(silver, "id", "status", OFFSET) == [(1, "paid", 2), (2, "new", 1), (3, "new", 3)]

    again = run_silver(settings, resources)  # nothing new: no commit, nothing read
    assert (again["bronze_files_read"], again["keys_merged"], again["delta_version"]) == (0, 0, 1)

    table = SilverLake(storage_url=settings.lake_url).table("shop.orders")
    assert table.consumed().ranges == {("binlake.shop.orders", 0): [(0, 3)]}
    # Delta time travel: the table and the offsets it held as of the first commit
    assert rows(table.read_current(version=0), "id", "status") == [(1, "new"), (2, "new")]
    assert table.consumed(version=0).ranges == {("binlake.shop.orders", 0): [(0, 1)]}


def test_change_feed_gives_before_and_after_images_since_a_version(settings, bronze, resources):
    c = bronze.change
    bronze.write("shop.orders", [c("c", 0, id=1, status="new"), c("c", 1, id=2, status="new")])
    run_silver(settings, resources)
    table = SilverLake(storage_url=settings.lake_url).table("shop.orders")
    assert table.changes_since(0).height == 0, "nothing after the newest version"

    bronze.write("shop.orders", [c("u", 2, id=1, status="paid"), c("d", 3, id=2, status="new")])
    run_silver(settings, resources)
    changes = table.changes_since(0)
    assert changes.sort("_change_type", "id").select(
        "_change_type", "id", "status", DELETED
    ).rows() == [
        ("update_postimage", 1, "paid", False),
        ("update_postimage", 2, None, True),  # the tombstone keeps the key only
        ("update_preimage", 1, "new", False),
        ("update_preimage", 2, "new", False),  # the deleted row, as it was
    ]
    assert set(changes["_commit_version"]) == {1}
    assert table.changes_since(None).filter(pl.col("_change_type") == "insert").height == 2


def test_a_delete_is_never_undone_by_an_older_change_arriving_later(settings, bronze, resources):
    c = bronze.change
    bronze.write("shop.orders", [c("c", 0, pos=100, id=1, status="new")])
    bronze.write("shop.orders", [c("d", 5, pos=500, id=1, status="new")])
    run_silver(settings, resources)
    # Debezium re-sends an older update after a crash (higher offset, earlier binlog position)
    bronze.write("shop.orders", [c("u", 9, pos=300, id=1, status="paid")])
    run_silver(settings, resources)
    table = SilverLake(storage_url=settings.lake_url).table("shop.orders")
    assert table.read_current().height == 0
    stored = table.read_all()
    # the tombstone keeps the key and position, not the deleted row's values
    assert rows(stored, "id", "status", DELETED, "_source_pos") == [(1, None, True, 500)]


def test_older_versions_merged_later_do_not_overwrite_newer_ones(settings, bronze, resources):
    c = bronze.change
    bronze.write("shop.orders", [c("u", 10, pos=900, id=7, status="shipped")])
    run_silver(settings, resources)
    bronze.write("shop.orders", [c("c", 2, pos=100, id=7, status="new")])  # a replayed range
    meta = run_silver(settings, resources)
    assert meta["keys_merged"] == 1
    silver = read_layer_table(settings, silver_key("shop.orders"))
    assert rows(silver, "id", "status") == [(7, "shipped")]


def test_a_re_inserted_key_comes_back(settings, bronze, resources):
    c = bronze.change
    bronze.write("shop.orders", [c("c", 0, id=1, status="new"), c("d", 1, id=1, status="new")])
    run_silver(settings, resources)
    bronze.write("shop.orders", [c("c", 2, id=1, status="again")])
    run_silver(settings, resources)
    assert rows(read_layer_table(settings, silver_key("shop.orders")), "id", "status") == [
        (1, "again")
    ]


def test_widened_and_new_columns_across_runs(settings, bronze, resources):
    c = bronze.change
    narrow = [("id", pa.int32()), ("name", pa.string())]
    bronze.write("shop.customers", [c("c", 0, id=1, name="Ada")], columns=narrow)
    run_silver(settings, resources, "shop.customers")
    wide = [("id", pa.int64()), ("name", pa.string()), ("tier", pa.int16())]
    bronze.write("shop.customers", [c("c", 1, id=2**40, name="Big", tier=3)], columns=wide)
    run_silver(settings, resources, "shop.customers")
    silver = read_layer_table(settings, silver_key("shop.customers"))
    assert silver.schema["id"] == pl.Int64
    assert rows(silver, "id", "name", "tier") == [(1, "Ada", None), (2**40, "Big", 3)]
    # a later change without the new column (dropped again) does not keep the old value
    still_wide = [("id", pa.int64()), ("name", pa.string())]
    bronze.write("shop.customers", [c("u", 2, id=2**40, name="Big2")], columns=still_wide)
    run_silver(settings, resources, "shop.customers")
    silver = read_layer_table(settings, silver_key("shop.customers"))
    assert rows(silver, "id", "name", "tier") == [(1, "Ada", None), (2**40, "Big2", None)]


def test_personal_data_never_reaches_silver(tmp_path, monkeypatch, bronze, resources):
    monkeypatch.setenv("BINLAKE_SILVER__PII_COLUMNS", '["shop.customers.name"]')
    monkeypatch.setenv("BINLAKE_SILVER__PII_MODE", "redact")
    settings = load_settings()
    c = bronze.change
    secrets = ["Ada Lovelace", "ada@example.com", "Bob", "bob@example.com"]
    bronze.write(
        "shop.customers",
        [
            c("c", 0, id=1, name=secrets[0], email=secrets[1]),
            c("c", 1, id=2, name=secrets[2], email=secrets[3]),
            c("d", 2, id=2, name=secrets[2], email=secrets[3]),
        ],
    )
    meta = run_silver(settings, resources, "shop.customers")
    assert meta["masked_columns"] == "name,email"
    stored = SilverLake(storage_url=settings.lake_url).table("shop.customers").read_all()
    assert rows(stored, "id", "name", "email") == [(1, None, None), (2, None, None)]
    # nothing of the values anywhere in the Delta table's files, data or log
    assert_no_file_holds(tmp_path / "lake" / "silver", secrets)


def test_a_keyless_table_merges_run_after_run(keyless_settings, bronze, resources):
    c = bronze.change
    bronze.write(KEYLESS_TABLE, [c("c", 0, kind="a", amount=1), c("c", 1, kind="b", amount=None)])
    run_silver(keyless_settings, resources, KEYLESS_TABLE)
    bronze.write(KEYLESS_TABLE, [c("d", 2, kind="b", amount=None), c("c", 3, kind="c", amount=3)])
    # a MERGE on every column, nulls included
    run_silver(keyless_settings, resources, KEYLESS_TABLE)
    silver = read_layer_table(keyless_settings, silver_key(KEYLESS_TABLE))
    assert rows(silver, "kind", "amount") == [("a", 1), ("c", 3)]

"""Silver current state, materialized by Dagster from real bronze Parquet files."""

from datetime import datetime
from decimal import Decimal

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from binlake.bronze.layout import OFFSET, OP, SOURCE_TS_MS
from binlake.lake import read_silver
from binlake.settings import load_settings
from binlake.silver.logic import latest_changes
from binlake.silver.pii import PiiPolicy
from dagster_defs.keys import silver_key
from dagster_defs.read import read_layer_table
from dagster_defs.silver.assets import build_silver_asset
from tests.support.lake import KEYLESS_TABLE


@pytest.fixture
def materialize(settings, resources):
    """Materialize silver of `table`; return the stored table and the materialization metadata."""

    def run(table: str, run_settings=None) -> tuple[pl.DataFrame, dict]:
        run_settings = run_settings or settings
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize(
                [build_silver_asset(table, run_settings)], resources=resources(), instance=instance
            )
            assert result.success
            (event,) = result.get_asset_materialization_events()
            metadata = {k: v.value for k, v in event.materialization.metadata.items()}
        stored = read_layer_table(run_settings, silver_key(table).path)
        return stored, metadata

    return run


def rows(frame: pl.DataFrame, *columns: str) -> list[tuple]:
    return [tuple(r) for r in frame.select(columns).iter_rows()]


def test_inserts_updates_deletes_and_tombstones(bronze, materialize, settings):
    c = bronze.change
    bronze.write(
        "shop.orders",
        [
            c("c", 0, id=1, customer_id=10, status="new"),
            c("c", 1, id=2, customer_id=11, status="new"),
            c("c", 2, id=3, customer_id=12, status="new"),
            c("u", 3, id=1, customer_id=10, status="paid"),
            c("d", 4, id=2, customer_id=11, status="new"),  # inserted in this same batch
            c("x", 5, id=2),  # Debezium's tombstone after the delete: key columns only
        ],
    )
    bronze.write(
        "shop.orders",
        [
            c("u", 6, id=1, customer_id=10, status="shipped"),
            c("u", 7, id=3, customer_id=12, status="cancelled"),
            c("d", 8, id=3, customer_id=12, status="cancelled"),
            c("t", 9, id=3, no_position=True),  # a tombstone as bronze files before TRUNCATE have
            c("c", 10, id=4, customer_id=13, status="new"),
            c("x", 11, id=4),  # a stray tombstone never removes a row
        ],
    )
    stored, metadata = materialize("shop.orders")
    assert rows(stored, "id", "customer_id", "status", OP, OFFSET) == [
        (1, 10, "shipped", "u", 6),
        (4, 13, "new", "c", 10),
    ]
    assert stored.columns == [
        "id",
        "customer_id",
        "status",
        "created_at",
        "updated_at",
        SOURCE_TS_MS,
        OFFSET,
        OP,
    ]
    # counts agree with the current-state reader: 2 live rows, keys 2 and 3 kept as tombstones
    assert (metadata["row_count"], metadata["rows_live"], metadata["tombstones"]) == (2, 2, 2)
    assert metadata["rows_live"] == read_silver("shop.orders", settings).height
    assert metadata["bronze_files_read"] == 2
    assert metadata["keys_merged"] == 4  # the newest change of keys 1..4
    assert metadata["changes_read"] == 12
    assert metadata["max_source_ts_ms"] == bronze.base_ts_ms
    assert metadata["max_source_ts"].startswith("2024-06-01T10:00:00")
    assert metadata["manifest_cursor"] == bronze.manifest.read_since(0)[1]


def test_binlog_position_beats_file_and_offset_order(bronze, materialize):
    """Changes are ordered by binlog file, position, row, then offset, not by arrival."""
    c = bronze.change
    bronze.write(
        "shop.orders",
        [
            c("c", 0, pos=100, id=1, status="first"),
            # later in the binlog, earlier in Kafka (e.g. another partition)
            c("u", 1, file="mariadb-bin.000002", pos=50, id=1, status="latest"),
            c("c", 2, pos=100, id=2, status="first"),
            c("u", 3, pos=300, row=1, id=2, status="row 1"),
            c("u", 4, pos=300, row=0, id=2, status="row 0"),
            c("c", 5, pos=400, id=3, status="a"),
        ],
    )
    bronze.write(
        "shop.orders",
        [
            # re-sent after a connector crash: higher offsets, earlier binlog positions
            c("u", 20, pos=9000, id=1, status="stale"),
            # two changes in one event: same position and row, the offset decides
            c("u", 21, pos=500, id=3, status="b"),
            c("u", 22, pos=500, id=3, status="c"),
        ],
    )
    stored, _ = materialize("shop.orders")
    assert rows(stored, "id", "status") == [(1, "latest"), (2, "row 1"), (3, "c")]


def test_redelivered_duplicates_give_one_row(bronze, materialize):
    c = bronze.change
    bronze.write("shop.orders", [c("c", 0, pos=10, id=1, status="new")])
    bronze.write("shop.orders", [c("c", 1, pos=10, id=1, status="new")])  # at-least-once
    stored, metadata = materialize("shop.orders")
    assert rows(stored, "id", "status", OFFSET) == [(1, "new", 1)]
    assert metadata["bronze_files_read"] == 2


def test_table_without_primary_key_uses_all_columns(keyless_settings, bronze, materialize):
    c = bronze.change
    bronze.write(
        KEYLESS_TABLE,
        [
            c("c", 0, kind="a", amount=1),
            c("c", 1, kind="b", amount=2),
            c("c", 2, kind="a", amount=1),  # an identical row collapses into one
            c("d", 3, kind="b", amount=2),
            c("c", 4, kind="c", amount=3),
        ],
    )
    stored, metadata = materialize(KEYLESS_TABLE, keyless_settings)
    assert rows(stored, "kind", "amount") == [("a", 1), ("c", 3)]
    assert metadata["primary_key"] == "(none: all columns)"


def test_primary_key_from_parquet_metadata_when_manifest_lacks_it(bronze, materialize):
    c = bronze.change
    bronze.write(
        "shop.orders",
        [c("c", 0, id=1, status="new"), c("u", 1, id=1, status="paid")],
        key_in_manifest=False,
    )
    stored, metadata = materialize("shop.orders")
    assert rows(stored, "id", "status") == [(1, "paid")]
    assert metadata["primary_key"] == "id"


def test_files_with_different_compatible_schemas(bronze, materialize):
    c = bronze.change
    old_columns = [("id", pa.int32()), ("name", pa.string())]
    bronze.write("shop.customers", [c("c", 0, id=1, name="Ada")], columns=old_columns)
    bronze.write(
        "shop.customers",
        [
            c("c", 1, id=2, name="Bob", email="bob@example.com"),
            c("u", 2, id=1, name="Ada L", email="ada@example.com"),
        ],
        columns=[("id", pa.int64()), ("name", pa.string()), ("email", pa.string())],
    )
    bronze.write("shop.customers", [c("c", 3, id=3, name="Cy")], columns=old_columns)
    stored, _ = materialize("shop.customers")
    assert stored.schema["id"] == pl.Int64
    digest = PiiPolicy.from_settings(load_settings().silver).digest  # email is personal data
    assert rows(stored, "id", "name", "email") == [
        (1, "Ada L", digest("ada@example.com")),
        (2, "Bob", digest("bob@example.com")),
        (3, "Cy", None),
    ]


def test_source_types_survive(bronze, materialize):
    c = bronze.change
    when = datetime(2024, 6, 1, 10, 15, 30, 123456)
    bronze.write(
        "shop.products",
        [c("c", 0, id=1, sku="A-1", name="Anvil", price=Decimal("19.99"), updated_at=when)],
    )
    stored, _ = materialize("shop.products")
    assert stored.schema["price"] == pl.Decimal(10, 2)
    assert stored.schema["updated_at"] == pl.Datetime("us")
    assert rows(stored, "price", "updated_at") == [(Decimal("19.99"), when)]


def test_empty_bronze_gives_an_empty_table(materialize):
    stored, metadata = materialize("shop.orders")
    assert stored.height == 0
    assert metadata["row_count"] == 0
    assert metadata["bronze_files_read"] == 0


def test_bronze_files_are_listed_by_the_manifest_not_the_directory(bronze, materialize):
    c = bronze.change
    entry = bronze.write("shop.orders", [c("c", 0, id=1, status="new")])
    # A file the writer has not (yet) recorded in the manifest is not part of bronze.
    unlisted = bronze.storage.full_path(entry.path).replace("+00000000000000000000", "+000099")
    pq.write_table(pq.read_table(bronze.storage.full_path(entry.path)), unlisted)
    stored, _ = materialize("shop.orders")
    assert stored.height == 1


def test_a_file_added_while_silver_computes_is_read_before_materializing(
    bronze, materialize, monkeypatch
):
    """Eager automation treats reports made during the run as handled by its materialization,
    so silver must not materialize a state older than the manifest it finishes with."""
    import binlake.silver.merge_changes as merge_step

    bronze.write("shop.orders", [bronze.change("c", 0, id=1, status="new")])
    calls = []

    def latest_changes_while_bronze_grows(frame, primary_key, truncated_at=None):
        calls.append(frame.height)
        if len(calls) == 1:
            bronze.write("shop.orders", [bronze.change("u", 1, id=1, status="paid")])
        return latest_changes(frame, primary_key, truncated_at)

    monkeypatch.setattr(merge_step, "latest_changes", latest_changes_while_bronze_grows)
    stored, metadata = materialize("shop.orders")
    assert calls == [1, 1]  # the second read holds only the file added meanwhile
    assert rows(stored, "id", "status") == [(1, "paid")]
    assert metadata["bronze_files_read"] == 2

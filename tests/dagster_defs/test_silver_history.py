"""The SCD type 2 history silver table, run after run, from real bronze files."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl
import pyarrow as pa
import pytest
from pydantic import ValidationError

from binlake.bronze.layout import OFFSET, OP, SOURCE_FILE, SOURCE_POS, SOURCE_ROW, SOURCE_TS_MS
from binlake.settings import load_settings
from binlake.silver.history import change_rows, merge_versions
from binlake.silver.pii import PiiPolicy
from dagster_defs.definitions import build_definitions
from dagster_defs.keys import bronze_key, silver_history_key, silver_key
from dagster_defs.resources import SilverLake
from dagster_defs.silver.history_assets import build_history_asset
from tests.support.dagster_runs import materialize_ok
from tests.support.lake import assert_no_file_holds

ORDERS = "shop.orders"
BASE_TS_MS = int(datetime(2024, 6, 1, 10, tzinfo=UTC).timestamp() * 1000)  # the conftest's


def run_history(settings, resources, table=ORDERS):
    result = materialize_ok([build_history_asset(table, settings)], resources())
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def at(seconds: float) -> datetime:
    """The UTC time `seconds` after the fixtures' base commit time."""
    return datetime.fromtimestamp(BASE_TS_MS / 1000 + seconds, tz=UTC)


def ms(seconds: float) -> int:
    return BASE_TS_MS + int(seconds * 1000)


def versions(settings, table=ORDERS, *columns: str) -> list[tuple]:
    stored = SilverLake(storage_url=settings.lake_url).history(table).read_all()
    columns = columns or ("id", "status", "op", "valid_from", "valid_to", "is_current")
    return [
        tuple(r)
        for r in stored.sort("id", SOURCE_FILE, SOURCE_POS, SOURCE_ROW, OFFSET)
        .select(columns)
        .iter_rows()
    ]


def test_insert_updates_and_delete_across_two_runs_give_four_versions(
    settings, bronze, resources, tmp_path
):
    c = bronze.change
    bronze.write(
        ORDERS,
        [
            c("c", 0, ts_ms=ms(0), id=1, status="new"),
            c("u", 1, ts_ms=ms(1), id=1, status="paid"),
            c("c", 2, ts_ms=ms(1), id=2, status="new"),
        ],
    )
    first = run_history(settings, resources)
    assert (first["versions_added"], first["versions_updated"], first["delta_version"]) == (3, 0, 0)
    assert (first["row_count"], first["current_rows"]) == (3, 2)

    bronze.write(
        ORDERS,
        [
            c("u", 3, ts_ms=ms(2), id=1, status="shipped"),
            c("d", 4, ts_ms=ms(3), id=1, status="shipped"),
            c("x", 5, ts_ms=ms(3), id=1),  # Kafka tombstone: no version
        ],
    )
    second = run_history(settings, resources)
    # two new versions; the previously current one (paid) closed
    assert (second["versions_added"], second["versions_updated"], second["delta_version"]) == (
        2,
        1,
        1,
    )
    assert (second["row_count"], second["current_rows"]) == (5, 1)
    assert versions(settings) == [
        (1, "new", "c", at(0), at(1), False),
        (1, "paid", "u", at(1), at(2), False),
        (1, "shipped", "u", at(2), at(3), False),
        # the delete: zero-length, not current, non-key columns not kept
        (1, None, "d", at(3), at(3), False),
        (2, "new", "c", at(1), None, True),
    ]
    history = SilverLake(storage_url=settings.lake_url).history(ORDERS)
    assert history.uri == f"{settings.lake_url}/silver/shop/orders__history"
    assert (tmp_path / "lake" / "silver" / "shop" / "orders__history" / "_delta_log").is_dir()
    assert history.consumed().ranges == {("binlake.shop.orders", 0): [(0, 5)]}
    assert history.read_current().get_column("id").to_list() == [2]
    # time travel: the history as of the first run
    assert history.read_all(version=0).height == 3

    again = run_history(settings, resources)  # nothing new: nothing read, no commit
    assert (again["bronze_files_read"], again["versions_added"], again["delta_version"]) == (
        0,
        0,
        1,
    )


def test_re_sent_duplicates_add_no_version(settings, bronze, resources):
    c = bronze.change
    bronze.write(
        ORDERS,
        [
            c("c", 0, pos=10, ts_ms=ms(0), id=1, status="new"),
            c("c", 1, pos=10, ts_ms=ms(0), id=1, status="new"),  # re-sent in the same run
            c("u", 2, pos=20, ts_ms=ms(1), id=1, status="paid"),
        ],
    )
    first = run_history(settings, resources)
    assert (first["versions_added"], first["row_count"]) == (2, 2)

    # Debezium re-sends after a connector crash: new offsets, same positions and values
    bronze.write(
        ORDERS,
        [
            c("c", 3, pos=10, ts_ms=ms(0), id=1, status="new"),
            c("u", 4, pos=20, ts_ms=ms(1), id=1, status="paid"),
        ],
    )
    second = run_history(settings, resources)
    assert (second["versions_added"], second["versions_updated"]) == (0, 0)
    assert (second["row_count"], second["delta_version"]) == (2, 0)  # no commit

    bronze.write(ORDERS, [c("u", 5, pos=30, ts_ms=ms(2), id=1, status="shipped")])
    third = run_history(settings, resources)
    assert (third["versions_added"], third["versions_updated"], third["row_count"]) == (1, 1, 3)
    assert versions(settings, ORDERS, "status", OFFSET, "valid_to", "is_current") == [
        ("new", 0, at(1), False),  # the copy stored first stays
        ("paid", 2, at(2), False),
        ("shipped", 5, None, True),
    ]
    table = SilverLake(storage_url=settings.lake_url).history(ORDERS)
    assert table.consumed().ranges == {("binlake.shop.orders", 0): [(0, 5)]}


def test_a_late_older_change_is_placed_in_binlog_order(settings, bronze, resources):
    c = bronze.change
    bronze.write(
        ORDERS,
        [
            c("c", 0, pos=100, ts_ms=ms(0), id=1, status="new"),
            c("u", 1, pos=300, ts_ms=ms(3), id=1, status="shipped"),
            c("c", 2, pos=110, ts_ms=ms(0), id=2, status="new"),
            c("d", 3, pos=500, ts_ms=ms(5), id=2, status="new"),
        ],
    )
    run_history(settings, resources)
    # a replayed range: higher offsets, earlier binlog positions than what is stored
    bronze.write(
        ORDERS,
        [
            c("u", 8, pos=200, ts_ms=ms(2), id=1, status="paid"),
            c("u", 9, pos=300, row=1, ts_ms=ms(4), id=2, status="late"),
        ],
    )
    meta = run_history(settings, resources)
    assert (meta["versions_added"], meta["versions_updated"]) == (2, 2)
    assert versions(settings) == [
        (1, "new", "c", at(0), at(2), False),  # valid_to moved back to the late version
        (1, "paid", "u", at(2), at(3), False),  # inserted between its neighbours
        (1, "shipped", "u", at(3), None, True),  # still current
        (2, "new", "c", at(0), at(4), False),
        (2, "late", "u", at(4), at(5), False),  # older than the delete: never current
        (2, None, "d", at(5), at(5), False),
    ]


def test_personal_data_is_masked_in_the_history(tmp_path, monkeypatch, bronze, resources):
    monkeypatch.setenv("BINLAKE_SILVER__HISTORY_TABLES", '["shop.customers"]')
    monkeypatch.setenv("BINLAKE_SILVER__PII_COLUMNS", '["shop.customers.name"]')
    settings = load_settings()
    c = bronze.change
    secrets = ["Ada Lovelace", "ada@example.com", "ada@lovelace.org"]
    bronze.write(
        "shop.customers",
        [
            c("c", 0, ts_ms=ms(0), id=1, name=secrets[0], email=secrets[1]),
            c("u", 1, ts_ms=ms(1), id=1, name=secrets[0], email=secrets[2]),
        ],
    )
    meta = run_history(settings, resources, "shop.customers")
    assert meta["masked_columns"] == "name,email"
    policy = PiiPolicy.from_settings(settings.silver)
    assert versions(settings, "shop.customers", "id", "name", "email", "is_current") == [
        (1, policy.digest(secrets[0]), policy.digest(secrets[1]), False),
        (1, policy.digest(secrets[0]), policy.digest(secrets[2]), True),
    ]
    assert_no_file_holds(tmp_path / "lake" / "silver", secrets)


def test_new_and_widened_columns_across_runs(settings, bronze, resources):
    c = bronze.change
    narrow = [("id", pa.int32()), ("name", pa.string())]
    bronze.write("shop.customers", [c("c", 0, ts_ms=ms(0), id=1, name="Ada")], columns=narrow)
    run_history(settings, resources, "shop.customers")
    wide = [("id", pa.int64()), ("name", pa.string()), ("tier", pa.int16())]
    bronze.write(
        "shop.customers",
        [c("u", 1, ts_ms=ms(1), id=1, name="Ada", tier=3), c("c", 2, id=2**40, name="Big")],
        columns=wide,
    )
    run_history(settings, resources, "shop.customers")
    stored = SilverLake(storage_url=settings.lake_url).history("shop.customers").read_all()
    assert stored.schema["id"] == pl.Int64
    assert versions(settings, "shop.customers", "id", "name", "tier", "valid_to") == [
        (1, "Ada", None, at(1)),
        (1, "Ada", 3, None),
        (2**40, "Big", None, None),
    ]


def test_a_table_without_primary_key_is_keyed_by_all_its_columns(settings, bronze, resources):
    c = bronze.change
    bronze.write(
        ORDERS,
        [c("c", 0, ts_ms=ms(0), id=1, status="new"), c("c", 1, ts_ms=ms(0), id=2, status=None)],
        primary_key=[],
    )
    first = run_history(settings, resources)
    assert first["primary_key"] == "(none: all columns)"
    bronze.write(
        ORDERS,
        [
            c("d", 2, ts_ms=ms(1), id=2, status=None),  # null-safe: matches the row with a null
            c("c", 3, ts_ms=ms(1), id=1, status="new"),  # an identical row inserted again
        ],
        primary_key=[],
    )
    second = run_history(settings, resources)
    assert (second["versions_added"], second["versions_updated"]) == (2, 2)
    assert versions(settings, ORDERS, "id", "status", "op", "valid_to", "is_current") == [
        (1, "new", "c", at(1), False),
        (1, "new", "c", None, True),
        (2, None, "c", at(1), False),
        (2, None, "d", at(1), False),
    ]


def test_only_listed_tables_get_a_history_asset(settings, monkeypatch):
    graph = build_definitions(settings).resolve_asset_graph()
    assert not any(k.path[-1].endswith("_history") for k in graph.get_all_asset_keys())

    monkeypatch.setenv("BINLAKE_SILVER__HISTORY_TABLES", '["shop.orders"]')
    defs = build_definitions(load_settings())
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    histories = {k for k in graph.get_all_asset_keys() if k.path[-1].endswith("_history")}
    assert histories == {dg.AssetKey(["silver", "shop", "orders_history"])}
    node = graph.get(silver_history_key(ORDERS))
    current = graph.get(silver_key(ORDERS))
    assert node.is_materializable
    assert node.parent_keys == {bronze_key(ORDERS)}
    assert node.group_name == current.group_name == "silver"
    assert node.tags == current.tags
    assert node.automation_condition == current.automation_condition


def test_history_tables_must_be_captured_tables():
    with pytest.raises(ValidationError, match=r"shop\.nope"):
        load_settings(silver={"history_tables": ["shop.orders", "shop.nope"]})
    assert load_settings(silver={"history_tables": ["shop.orders"]}).silver.history_tables == [
        "shop.orders"
    ]


# Pure logic, no Delta table


def _changes(*rows: dict) -> pl.DataFrame:
    base = {
        "_topic": "t",
        "_partition": 0,
        SOURCE_FILE: "mariadb-bin.000001",
        SOURCE_ROW: 0,
        "_source_snapshot": "false",
        "_captured_ts_ms": 0,
    }
    return pl.DataFrame([{**base, **r} for r in rows])


def test_changes_of_one_event_sharing_a_position_both_stay_in_offset_order():
    new = change_rows(
        _changes(
            {OP: "u", OFFSET: 5, SOURCE_POS: 50, SOURCE_TS_MS: ms(0), "id": 1, "v": "b"},
            {OP: "u", OFFSET: 4, SOURCE_POS: 50, SOURCE_TS_MS: ms(0), "id": 1, "v": "a"},
            {OP: "u", OFFSET: 6, SOURCE_POS: 50, SOURCE_TS_MS: ms(0), "id": 1, "v": "b"},  # dup
        ),
        ["id"],
    )
    plan = merge_versions(None, new, ["id"])
    assert plan.rows.select("v", OFFSET, "is_current").rows() == [("a", 4, False), ("b", 5, True)]
    assert (plan.inserted, plan.updated) == (2, 0)


def test_valid_from_never_goes_back_in_binlog_order():
    # a transaction that started earlier (ts) but committed later (position)
    new = change_rows(
        _changes(
            {OP: "c", OFFSET: 0, SOURCE_POS: 10, SOURCE_TS_MS: ms(0), "id": 1, "v": "a"},
            {OP: "u", OFFSET: 1, SOURCE_POS: 20, SOURCE_TS_MS: ms(5), "id": 1, "v": "b"},
            {OP: "u", OFFSET: 2, SOURCE_POS: 30, SOURCE_TS_MS: ms(4), "id": 1, "v": "c"},
        ),
        ["id"],
    )
    rows = merge_versions(None, new, ["id"]).rows
    assert rows.select("v", "valid_from", "valid_to", SOURCE_TS_MS).rows() == [
        ("a", at(0), at(5), ms(0)),
        ("b", at(5), at(5), ms(5)),
        ("c", at(5), None, ms(4)),  # raised to the previous version's; raw time kept
    ]


def test_without_a_primary_key_a_row_is_keyed_by_all_its_columns():
    new = change_rows(
        _changes(
            {OP: "c", OFFSET: 0, SOURCE_POS: 10, SOURCE_TS_MS: ms(0), "a": 1, "b": None},
            {OP: "c", OFFSET: 1, SOURCE_POS: 20, SOURCE_TS_MS: ms(1), "a": 2, "b": "x"},
            {OP: "d", OFFSET: 2, SOURCE_POS: 30, SOURCE_TS_MS: ms(2), "a": 1, "b": None},
        ),
        [],
    )
    rows = merge_versions(None, new, ["a", "b"]).rows
    assert rows.select("a", "b", "op", "valid_to", "is_current").rows() == [
        (1, None, "c", at(2), False),
        (1, None, "d", at(2), False),
        (2, "x", "c", None, True),
    ]

"""The bronze schema check and the widened bronze read, on real Parquet files written by the
bronze worker's own PartitionWriter into a temp lake."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import dagster as dg
import polars as pl
import pyarrow as pa
import pytest

from binlake.settings import Settings
from dagster_defs.bronze.checks import (
    SCHEMA_CHECK,
    build_schema_check,
    check_schema_versions,
)
from dagster_defs.bronze.sensors import MANIFEST_SENSOR_NAME
from dagster_defs.definitions import build_definitions
from dagster_defs.keys import bronze_key, silver_key
from dagster_defs.resources import BronzeLake
from tests.support.dagster_runs import evaluate_check
from tests.support.worker_bronze import WorkerBronze

TABLE = "shop.products"
CHECK_KEY = dg.AssetCheckKey(bronze_key(TABLE), SCHEMA_CHECK)


def columns(*pairs: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, type_) for name, type_ in pairs])


V1 = columns(("id", pa.int64()), ("qty", pa.int32()), ("price", pa.decimal128(10, 2)))
WITH_NOTE = V1.append(pa.field("note", pa.string()))  # ADD COLUMN note VARCHAR NULL
QTY_BIGINT = columns(  # MODIFY qty BIGINT
    ("id", pa.int64()), ("qty", pa.int64()), ("price", pa.decimal128(10, 2)), ("note", pa.string())
)
PRICE_WIDER = columns(  # MODIFY price DECIMAL(12,4)
    ("id", pa.int64()), ("qty", pa.int64()), ("price", pa.decimal128(12, 4)), ("note", pa.string())
)
NOTE_DROPPED = columns(("id", pa.int64()), ("qty", pa.int64()), ("price", pa.decimal128(12, 4)))
QTY_TEXT = columns(("id", pa.int64()), ("qty", pa.string()), ("price", pa.decimal128(10, 2)))


@pytest.fixture
def lake(settings: Settings) -> BronzeLake:
    return BronzeLake(storage_url=settings.lake_url)


def metadata(result: dg.AssetCheckResult) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in result.metadata.items()}


# -- the check ----------------------------------------------------------------------------------


def test_accepted_drift_passes_and_lists_every_version(settings, lake):
    bronze = WorkerBronze(settings, TABLE)
    bronze.rows(V1, {"id": 1, "qty": 1, "price": Decimal("1.50")})
    bronze.rows(WITH_NOTE, {"id": 2, "qty": 2, "note": "n"})
    bronze.rows(QTY_BIGINT, {"id": 3, "qty": 5_000_000_000})
    bronze.rows(PRICE_WIDER, {"id": 4, "price": Decimal("12345678.1234")})
    bronze.rows(NOTE_DROPPED, {"id": 5, "qty": 5})
    bronze.close()

    result = check_schema_versions(lake, TABLE)
    assert result.passed
    meta = metadata(result)
    assert (meta["schema_versions"], meta["current_schema_version"]) == (5, 5)
    assert meta["breaking_changes"] == "none"
    accepted = meta["accepted_changes"]
    for text in (
        "schema version 1 -> 2 (accepted): column 'note' added (string)",
        "column 'qty' widened from int32 to int64",
        "column 'price' widened from decimal128(10, 2) to decimal128(12, 4)",
        "column 'note' (string) dropped, kept as nulls",
    ):
        assert text in accepted, accepted
    assert "`price` | `decimal128(12, 4)`" in meta["current_schema"]


def test_a_type_family_change_fails_naming_the_column_and_both_types(settings, lake):
    bronze = WorkerBronze(settings, TABLE)
    bronze.rows(V1, {"id": 1, "qty": 1})
    bronze.rows(QTY_TEXT, {"id": 2, "qty": "two"})  # MODIFY qty VARCHAR(10)
    bronze.rows(QTY_TEXT, {"id": 3, "qty": "three"})
    bronze.close()

    result = check_schema_versions(lake, TABLE)
    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.ERROR
    assert result.description is not None
    assert (
        "shop.products schema version 1 -> 2 (breaking): column 'qty' changed from int32 to "
        "string: type family changed (integer -> string)"
    ) in result.description
    assert "column 'qty' changed from int32 to string" in metadata(result)["breaking_changes"]


def test_narrowing_fails_even_after_accepted_versions(settings, lake):
    bronze = WorkerBronze(settings, TABLE)
    bronze.rows(V1, {"id": 1})
    bronze.rows(QTY_BIGINT, {"id": 2})
    bronze.rows(WITH_NOTE, {"id": 3, "qty": 3})  # MODIFY qty INT: BIGINT -> INT
    bronze.close()
    result = check_schema_versions(lake, TABLE)
    assert not result.passed
    assert "column 'qty' changed from int64 to int32: narrowed" in (result.description or "")
    assert "1 -> 2 (accepted)" in metadata(result)["accepted_changes"]


def test_a_primary_key_change_fails(settings, lake):
    bronze = WorkerBronze(settings, TABLE)
    bronze.rows(V1, {"id": 1, "qty": 1})
    bronze.rows(V1, {"id": 2, "qty": 1}, primary_key=("id", "qty"))
    bronze.close()
    result = check_schema_versions(lake, TABLE)
    assert not result.passed
    assert "primary key changed from (id) to (id, qty)" in (result.description or "")


def test_files_without_tracked_versions_pass(bronze, lake):
    bronze.write(TABLE, [bronze.change("c", 0, id=1, sku="a", name="A", price=Decimal(1))])
    result = check_schema_versions(lake, TABLE)
    assert result.passed and metadata(result)["schema_versions"] == 0
    assert "no bronze file of shop.products has a tracked schema version" in result.description


def test_only_the_checked_tables_files_count(settings, lake):
    WorkerBronze(settings, "shop.orders").rows(V1, {"id": 1}).rows(QTY_TEXT, {"id": 2}).close()
    WorkerBronze(settings, TABLE).rows(V1, {"id": 1}).close()
    assert check_schema_versions(lake, TABLE).passed
    assert not check_schema_versions(lake, "shop.orders").passed


def test_the_check_runs_in_dagster_on_the_bronze_asset(settings, resources):
    bronze = WorkerBronze(settings, TABLE)
    bronze.rows(V1, {"id": 1, "qty": 1}).rows(QTY_TEXT, {"id": 2, "qty": "x"}).close()
    evaluation = evaluate_check(settings, resources(), CHECK_KEY)
    assert evaluation.asset_check_key == CHECK_KEY and not evaluation.passed
    assert "column 'qty' changed from int32 to string" in (evaluation.description or "")


def test_every_bronze_and_silver_table_has_the_check(settings):
    graph = build_definitions(settings).resolve_asset_graph()
    assert {
        (key.asset_key, key.name) for key in graph.asset_check_keys if key.name == SCHEMA_CHECK
    } == {
        *((bronze_key(table), SCHEMA_CHECK) for table in settings.tables),
        *((silver_key(table), SCHEMA_CHECK) for table in settings.tables),
    }
    assert build_schema_check(TABLE).check_keys == {CHECK_KEY}


def test_the_check_on_silver_reports_the_bronze_finding(settings, resources):
    WorkerBronze(settings, TABLE).rows(V1, {"id": 1, "qty": 1}).rows(
        QTY_TEXT, {"id": 2, "qty": "x"}
    ).close()
    check = build_schema_check(TABLE, asset=silver_key(TABLE))
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [check, dg.AssetSpec(silver_key(TABLE))],
            selection=dg.AssetSelection.checks(dg.AssetCheckKey(silver_key(TABLE), SCHEMA_CHECK)),
            resources=resources(),
            instance=instance,
        )
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.asset_key == silver_key(TABLE) and not evaluation.passed
    assert "column 'qty' changed from int32 to string" in (evaluation.description or "")


def test_the_check_is_requested_when_a_bronze_hour_is_reported(settings, resources):
    defs = build_definitions(settings)
    WorkerBronze(settings, TABLE).rows(V1, {"id": 1}).close()
    with dg.DagsterInstance.ephemeral() as instance:
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        sensor = defs.resolve_sensor_def(MANIFEST_SENSOR_NAME)
        reported = sensor(dg.build_sensor_context(instance=instance, resources=resources()))
        for event in reported.asset_events:
            instance.report_runless_asset_event(event)
        after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    requested = {r.key for r in after.results if r.true_subset.size > 0}
    assert CHECK_KEY in requested
    assert dg.AssetCheckKey(bronze_key("shop.orders"), SCHEMA_CHECK) not in requested


# -- reading bronze across schema versions ------------------------------------------------------


def test_read_table_gives_the_widened_types_of_accepted_drift(settings, lake):
    bronze = WorkerBronze(settings, TABLE)
    bronze.rows(V1, {"id": 1, "qty": 7, "price": Decimal("1.50")})
    bronze.rows(WITH_NOTE, {"id": 2, "qty": 8, "price": Decimal("2.25"), "note": "n"})
    bronze.rows(QTY_BIGINT, {"id": 3, "qty": 5_000_000_000})
    bronze.rows(PRICE_WIDER, {"id": 4, "price": Decimal("12345678.1234")})
    bronze.rows(NOTE_DROPPED, {"id": 5, "qty": 5})
    bronze.close()

    frame = lake.read_table(TABLE).frame.sort("id")
    assert frame.schema["qty"] == pl.Int64
    assert frame.schema["price"] == pl.Decimal(12, 4)
    assert frame.schema["note"] == pl.String
    assert frame["qty"].to_list() == [7, 8, 5_000_000_000, None, 5]
    assert frame["price"].to_list() == [
        Decimal("1.5000"),
        Decimal("2.2500"),
        None,
        Decimal("12345678.1234"),
        None,
    ]
    assert frame["note"].to_list() == [None, "n", None, None, None]


@pytest.mark.parametrize(
    ("old", "new", "old_value", "new_value", "expected_type", "expected"),
    [
        (pa.int8(), pa.int16(), 1, 300, pl.Int16, [1, 300]),
        (pa.float32(), pa.float64(), 0.5, 0.25, pl.Float64, [0.5, 0.25]),
        # polars alone would pick milliseconds here and drop the microseconds
        (
            pa.timestamp("ms"),
            pa.timestamp("us"),
            datetime(2024, 6, 1, 10, 0, 0, 1000),
            datetime(2024, 6, 1, 10, 0, 0, 123456),
            pl.Datetime("us"),
            [datetime(2024, 6, 1, 10, 0, 0, 1000), datetime(2024, 6, 1, 10, 0, 0, 123456)],
        ),
        # decimal256 becomes text (polars has no 256-bit decimal), of one scale for every file
        (
            pa.decimal128(10, 2),
            pa.decimal256(40, 4),
            Decimal("1.50"),
            Decimal("2.2500"),
            pl.String,
            ["1.5000", "2.2500"],
        ),
    ],
    ids=["int8-int16", "float32-float64", "timestamp-ms-us", "decimal128-decimal256"],
)
def test_read_table_widens_each_accepted_type(
    settings, lake, old, new, old_value, new_value, expected_type, expected
):
    bronze = WorkerBronze(settings, TABLE)
    bronze.rows(columns(("id", pa.int64()), ("v", old)), {"id": 1, "v": old_value})
    bronze.rows(columns(("id", pa.int64()), ("v", new)), {"id": 2, "v": new_value})
    bronze.close()
    frame = lake.read_table(TABLE).frame.sort("id")
    assert frame.schema["v"] == expected_type
    assert frame["v"].to_list() == expected


def test_read_table_leaves_a_breaking_column_to_polars(settings, lake):
    # No common type exists; the check reports it. polars' relaxed concat makes it text.
    WorkerBronze(settings, TABLE).rows(V1, {"id": 1, "qty": 1}).rows(
        QTY_TEXT, {"id": 2, "qty": "x"}
    ).close()
    frame = lake.read_table(TABLE).frame.sort("id")
    assert frame["qty"].to_list() == ["1", "x"]

"""DDL that the change stream alone does not carry to every row (issue 11, item 3), through the
real stack: MariaDB, the Kafka broker, Connect + Debezium, the Faust bronze worker and Dagster's
automation on the shared `edge_stack`.

* ADD COLUMN with a default: MySQL gives every existing row the default without a binlog event
  per row; silver must show it for rows not changed since (and keep a NULL written on purpose).
* DROP COLUMN keeps working (the dropped column stays in silver, null from then on).
* A rename (`CHANGE b b2 ...`) cannot be applied from the stream: silver must refuse it loudly,
  naming the table and both columns, never merge rows with null in the new column.
"""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from binlake.bronze.schema_drift import SchemaNeedsResync
from binlake.demo import lake_checks
from binlake.local_stack import components
from binlake.local_stack.stack import LocalStack
from binlake.settings import Settings
from binlake.silver.consumed import ConsumedOffsets
from binlake.silver.incremental import unconsumed_reads
from binlake.silver.resync import ResyncLog
from binlake.silver.schema_guard import completed_resyncs
from binlake.source_db import connect_source
from binlake.storage import LakeStorage
from dagster_defs.bronze.checks import check_schema_versions
from dagster_defs.keys import silver_key
from dagster_defs.resources import BronzeLake, SilverLake
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration

DEFAULT = "shop.edge_default"
DROP = "shop.edge_drop"
RENAME = "shop.edge_rename"


def _execute(settings: Settings, *statements: str) -> None:
    with connect_source(settings, admin=True, database="shop") as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _silver_rows(settings: Settings, table: str) -> dict[int, dict]:
    silver = lake_checks.silver_without_provenance(settings, table)
    return {row["id"]: row for row in silver.iter_rows(named=True)}


def _source_rows(settings: Settings, table: str) -> dict[int, dict]:
    source = lake_checks.source_table(settings, table)
    return {row["id"]: row for row in source.iter_rows(named=True)}


def _equal_value_for_value(settings: Settings, table: str) -> bool:
    """Every source row is in silver with the same value in every source column, and silver
    holds no other live row."""
    source, silver = _source_rows(settings, table), _silver_rows(settings, table)
    if source.keys() != silver.keys():
        return False
    return all(
        column in silver[key] and silver[key][column] == value
        for key, row in source.items()
        for column, value in row.items()
    )


def _differences(settings: Settings, table: str) -> list[str]:
    source, silver = _source_rows(settings, table), _silver_rows(settings, table)
    found = [f"keys only in source: {sorted(source.keys() - silver.keys())}"] * bool(
        source.keys() - silver.keys()
    )
    found += [f"keys only in silver: {sorted(silver.keys() - source.keys())}"] * bool(
        silver.keys() - source.keys()
    )
    for key in sorted(source.keys() & silver.keys()):
        for column, value in source[key].items():
            if silver[key].get(column, "<missing>") != value:
                found.append(
                    f"id {key} {column}: source {value!r}, "
                    f"silver {silver[key].get(column, '<missing>')!r}"
                )
    return found


def test_add_column_with_defaults_then_drop(edge_stack: LocalStack) -> None:
    settings = edge_stack.settings
    _execute(
        settings,
        "CREATE TABLE edge_default (id INT PRIMARY KEY, a VARCHAR(20) NOT NULL)",
        "INSERT INTO edge_default VALUES (1,'one'),(2,'two'),(3,'three'),(4,'four'),(5,'five')",
        "CREATE TABLE edge_drop (id INT PRIMARY KEY, a VARCHAR(20) NOT NULL, legacy INT NULL)",
        "INSERT INTO edge_drop VALUES (1,'one',10),(2,'two',20),(3,'three',30)",
    )
    # Silver holds the rows from before the ALTER: they must take the defaults when silver
    # first sees the new columns (case 1 of the brief).
    wait_for(
        "silver edge_default holds the first rows",
        lambda: len(_silver_rows(settings, DEFAULT)) == 5,
    )
    _execute(
        settings,
        "ALTER TABLE edge_default ADD COLUMN c INT NOT NULL DEFAULT 7",
        "ALTER TABLE edge_default ADD COLUMN n VARCHAR(10) NULL DEFAULT 'x'",
        "ALTER TABLE edge_default ADD COLUMN plain VARCHAR(10) NULL",
        "ALTER TABLE edge_default ADD COLUMN z INT NOT NULL",
        "ALTER TABLE edge_default ADD COLUMN s VARCHAR(5) NOT NULL",
        "UPDATE edge_default SET a = 'TWO' WHERE id = 2",
        "UPDATE edge_default SET c = 8, n = NULL WHERE id = 3",
        "INSERT INTO edge_default (id, a, n, z, s) VALUES (6, 'six', NULL, 5, 's6')",
        "INSERT INTO edge_default (id, a, z, s) VALUES (7, 'seven', 0, '')",
        "DELETE FROM edge_default WHERE id = 5",
        # edge_drop: a new column with a default right after the rows, and no wait, so bronze
        # files of both versions usually reach silver in one batch (case 2); then a drop.
        "ALTER TABLE edge_drop ADD COLUMN c DECIMAL(6,2) NOT NULL DEFAULT 1.50",
        "UPDATE edge_drop SET a = 'TWO' WHERE id = 2",
        "ALTER TABLE edge_drop DROP COLUMN legacy",
        "UPDATE edge_drop SET c = 2.25 WHERE id = 3",
        "INSERT INTO edge_drop (id, a) VALUES (4, 'four')",
    )
    for table in (DEFAULT, DROP):
        try:
            wait_for(
                f"silver {table} equals the source value for value",
                lambda t=table: _equal_value_for_value(settings, t),
            )
        except AssertionError:
            raise AssertionError(f"{table}: {_differences(settings, table)}") from None

    silver = _silver_rows(settings, DEFAULT)
    # Spelled out for the rows no binlog event touched after the ALTER, and a NULL on purpose.
    assert {k: (r["c"], r["n"], r["plain"], r["z"], r["s"]) for k, r in silver.items()} == {
        1: (7, "x", None, 0, ""),
        2: (7, "x", None, 0, ""),
        3: (8, None, None, 0, ""),
        4: (7, "x", None, 0, ""),
        6: (7, None, None, 5, "s6"),
        7: (7, "x", None, 0, ""),
    }
    # The deleted key stays a tombstone with nulls, not a row with the default.
    stored = SilverLake(storage_url=settings.lake_url).table(DEFAULT).read_all()
    tombstone = stored.filter(pl.col("id") == 5).row(0, named=True)
    assert tombstone["_deleted"] and tombstone["c"] is None and tombstone["n"] is None

    dropped = _silver_rows(settings, DROP)
    # The dropped column is kept: its last value where a row has not changed since the drop.
    assert {k: r["legacy"] for k, r in dropped.items()} == {1: 10, 2: 20, 3: None, 4: None}
    assert check_schema_versions(BronzeLake(storage_url=settings.lake_url), DEFAULT).passed
    assert check_schema_versions(BronzeLake(storage_url=settings.lake_url), DROP).passed


def _silver_failures(settings: Settings, table: str) -> list[str]:
    """Error messages of failed steps of Dagster runs that materialized silver `table`."""
    instance = dg.DagsterInstance.from_config(str(components.dagster_home(settings)))
    try:
        messages: list[str] = []
        key = silver_key(table)
        for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE])):
            if run.asset_selection is not None and key not in run.asset_selection:
                continue
            for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
                error = record.dagster_event.step_failure_data.error  # type: ignore[union-attr]
                text = error.to_string() if error is not None else ""
                if table in text:
                    messages.append(text)
        return messages
    finally:
        instance.dispose()


def test_a_rename_fails_loudly_then_heals_by_a_resync_it_starts(edge_stack: LocalStack) -> None:
    settings = edge_stack.settings
    _execute(
        settings,
        "CREATE TABLE edge_rename (id INT PRIMARY KEY, b VARCHAR(40) NULL, qty INT NOT NULL)",
        "INSERT INTO edge_rename VALUES (1,'one',1),(2,'two',2),(3,'three',3)",
    )
    wait_for(
        "silver edge_rename holds the first rows", lambda: _equal_value_for_value(settings, RENAME)
    )
    _execute(
        settings,
        "ALTER TABLE edge_rename CHANGE b b2 VARCHAR(40) NULL",
        "UPDATE edge_rename SET qty = 20 WHERE id = 2",
    )
    # The bronze check names the table, both columns and their types.
    lake = BronzeLake(storage_url=settings.lake_url)

    def check_fails() -> bool:
        return not check_schema_versions(lake, RENAME).passed

    wait_for("the bronze schema check of edge_rename fails", check_fails, timeout_s=120)
    description = check_schema_versions(lake, RENAME).description or ""
    assert "shop.edge_rename" in description
    assert "(b string) -> (b2 string)" in description and "suspected rename" in description
    assert "binlake resync --table shop.edge_rename" in description

    # Silver's merge path refuses it with the specific error, naming table, columns and types.
    target = SilverLake(storage_url=settings.lake_url).table(RENAME)
    consumed: ConsumedOffsets = target.consumed()
    with pytest.raises(SchemaNeedsResync) as refused:
        for _ in unconsumed_reads(lake.reader(), RENAME, consumed):
            pass
    assert refused.value.table == RENAME
    assert refused.value.columns == ("b", "b2")
    assert refused.value.old_types == ("(b string)",)
    assert refused.value.new_types == ("(b2 string)",)

    # Dagster's automation runs the silver asset, which fails with that message and starts a
    # resync of the table by itself; silver never holds a row with null in b2 meanwhile.
    wait_for(
        "a silver run of edge_rename failed naming the rename",
        lambda: any(
            "SchemaNeedsResync" in m and "(b string) -> (b2 string)" in m
            for m in _silver_failures(settings, RENAME)
        ),
        timeout_s=180,
    )
    silver = lake_checks.silver_without_provenance(settings, RENAME)
    assert "b2" not in silver.columns or silver.filter(pl.col("b2").is_null()).is_empty()

    # Without a user action: once the resync has caught up, silver equals the source value for
    # value (b2 re-read for every row; the dropped b is null), and the check passes.
    wait_for(
        "silver edge_rename healed by the resync the refusal started",
        lambda: _equal_value_for_value(settings, RENAME),
        timeout_s=300,
    )
    [state] = ResyncLog.of(settings).states(RENAME)
    assert "suspected rename" in state.request.reason
    storage = LakeStorage.from_url(settings.lake_url)
    assert check_schema_versions(lake, RENAME, completed_resyncs(storage, RENAME)).passed
    silver = lake_checks.silver_without_provenance(settings, RENAME)
    assert sorted(silver.select("id", "b2", "qty").rows()) == [
        (1, "one", 1),
        (2, "two", 20),
        (3, "three", 3),
    ]

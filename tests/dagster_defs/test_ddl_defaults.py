"""Column defaults and schema changes silver cannot apply exactly (issue 11, item 3), on real
bronze files written by the bronze worker's PartitionWriter and a real silver Delta table."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import dagster as dg
import polars as pl
import pyarrow as pa
import pytest

from binlake.bronze.schema_drift import SchemaNeedsResync
from binlake.settings import Settings
from binlake.silver import schema_heal
from binlake.silver.consumed import ConsumedOffsets
from binlake.silver.incremental import unconsumed_reads
from binlake.silver.rebuild import AsOf
from binlake.silver.resync import (
    BinlogPosition,
    ResyncCompletion,
    ResyncLog,
    ResyncRequest,
    ResyncState,
)
from binlake.silver.schema_guard import CompletedResync, completed_resyncs
from binlake.storage import LakeStorage
from cdc.column_defaults import DEFAULT_KEY, DEFAULT_UNKNOWN_KEY, encode_default
from dagster_defs.bronze.checks import check_schema_versions
from dagster_defs.resources import BronzeLake, SilverLake
from dagster_defs.silver.assets import build_silver_asset
from tests.support.dagster_runs import materialize
from tests.support.rebuild import rebuild
from tests.support.worker_bronze import WorkerBronze

TABLE = "shop.products"


def _default(name: str, data_type: pa.DataType, value: Any, *, nullable: bool) -> pa.Field:
    metadata = {DEFAULT_KEY: encode_default(value, data_type)}
    return pa.field(name, data_type, nullable=nullable, metadata=metadata)


V1 = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("a", pa.string())])
# ALTER TABLE ADD COLUMN c INT NOT NULL DEFAULT 7, ADD COLUMN n VARCHAR(10) NULL DEFAULT 'x',
# ADD COLUMN plain VARCHAR(10) NULL (no default: null)
WITH_DEFAULTS = pa.schema(
    [
        *V1,
        _default("c", pa.int32(), 7, nullable=False),
        _default("n", pa.string(), "x", nullable=True),
        pa.field("plain", pa.string()),
    ]
)
# ALTER TABLE CHANGE a a2 VARCHAR(20)
RENAMED = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("a2", pa.string())])


@pytest.fixture(autouse=True)
def resyncs_requested(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Resyncs silver starts on a refusal, recorded instead of signalled (no source here; the
    real round trip is tests/integration/test_ddl_edge_cases.py)."""
    requested: list[tuple[str, str]] = []

    def request(settings: Settings, table: str, *, reason: str) -> SimpleNamespace:
        requested.append((table, reason))
        return SimpleNamespace(id=f"resync-{len(requested)}")

    monkeypatch.setattr(schema_heal, "request_resync", request)
    monkeypatch.setattr(schema_heal, "resync_in_progress", lambda settings, table: None)
    return requested


def run_silver(settings: Settings, resources) -> dg.ExecuteInProcessResult:
    return materialize([build_silver_asset(TABLE, settings)], resources(), raise_on_error=False)


def refusal_message(result: dg.ExecuteInProcessResult) -> str:
    """The text of the failed silver run's one step failure."""
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    return failure.step_failure_data.error.to_string()  # type: ignore[union-attr]


def silver(settings: Settings) -> dict[int, dict[str, Any]]:
    stored = SilverLake(storage_url=settings.lake_url).table(TABLE).read_all()
    return {row["id"]: row for row in stored.iter_rows(named=True)}


def test_rows_read_with_an_older_schema_version_get_the_new_columns_default(settings):
    bronze = WorkerBronze(settings, TABLE)
    bronze.rows(V1, {"id": 1, "a": "one"}, {"id": 2, "a": "two"}, {"id": 5, "a": "five"})
    bronze.rows(V1, {"id": 5, "a": "five"}, op="d")
    bronze.rows(V1, {"id": 5}, op="x")  # a tombstone carries no row: nothing to fill
    bronze.rows(WITH_DEFAULTS, {"id": 3, "a": "three", "c": 8, "n": None, "plain": "p"})
    bronze.flush()
    read = BronzeLake(storage_url=settings.lake_url).read_table(TABLE)
    assert read.column_defaults == {"c": 7, "n": "x"}
    frame = read.frame.sort("id", "_offset").select("id", "_op", "c", "n", "plain")
    assert frame.rows() == [
        (1, "c", 7, "x", None),
        (2, "c", 7, "x", None),
        (3, "c", 8, None, "p"),
        (5, "c", 7, "x", None),
        (5, "d", 7, "x", None),
        (5, "x", None, None, None),
    ]


def test_silver_gives_rows_merged_before_a_new_column_its_default_and_keeps_tombstones_null(
    settings, resources
):
    bronze = WorkerBronze(settings, TABLE)
    bronze.rows(V1, {"id": 1, "a": "one"}, {"id": 2, "a": "two"}, {"id": 3, "a": "three"})
    bronze.rows(V1, {"id": 3, "a": "three"}, op="d")
    bronze.flush()
    assert run_silver(settings, resources).success
    bronze.rows(WITH_DEFAULTS, {"id": 2, "a": "TWO", "c": 8, "n": None, "plain": None})
    bronze.rows(WITH_DEFAULTS, {"id": 4, "a": "four", "c": 7, "n": "y", "plain": "p"})
    bronze.flush()
    assert run_silver(settings, resources).success
    rows = silver(settings)
    values = {k: (r["a"], r["c"], r["n"], r["plain"], r["_deleted"]) for k, r in rows.items()}
    assert values == {
        1: ("one", 7, "x", None, False),  # not changed since the ALTER: the defaults
        2: ("TWO", 8, None, None, False),  # changed: its own values, a NULL kept NULL
        3: (None, None, None, None, True),  # a tombstone stays without values
        4: ("four", 7, "y", "p", False),
    }
    # A later run with nothing new changes nothing; the next change merges as usual.
    bronze.rows(WITH_DEFAULTS, {"id": 1, "a": "ONE", "c": 1, "n": "z", "plain": None})
    bronze.flush()
    assert run_silver(settings, resources).success
    assert silver(settings)[1]["c"] == 1 and silver(settings)[4]["c"] == 7
    # The merge records the bronze schema version it merged (the guard's shortcut).
    assert SilverLake(storage_url=settings.lake_url).table(TABLE).merged_schema_version() == 2


def test_a_rename_is_refused_by_silver_and_the_check_until_a_resync_heals_it(
    settings, resources, resyncs_requested
):
    bronze = WorkerBronze(settings, TABLE)
    bronze.rows(V1, {"id": 1, "a": "one"}, {"id": 2, "a": "two"})
    bronze.flush()
    assert run_silver(settings, resources).success
    bronze.rows(RENAMED, {"id": 2, "a2": "TWO"})  # offset 2: the rename's first record
    bronze.flush()
    lake = BronzeLake(storage_url=settings.lake_url)

    message = refusal_message(run_silver(settings, resources))
    assert "SchemaNeedsResync" in message
    assert "shop.products: schema version 2" in message
    assert "(a string) -> (a2 string)" in message and "suspected rename" in message
    # ... and started the resync that heals it, without a user action
    assert "resync resync-1 started automatically" in message
    [(table, reason)] = resyncs_requested
    assert table == TABLE and "suspected rename" in reason
    # Nothing merged: no row with null in a2.
    assert "a2" not in silver(settings)[1]
    check = check_schema_versions(lake, TABLE)
    assert not check.passed and "binlake resync --table shop.products" in check.description

    consumed = SilverLake(storage_url=settings.lake_url).table(TABLE).consumed()
    with pytest.raises(SchemaNeedsResync) as refused:
        list(unconsumed_reads(lake.reader(), TABLE, consumed))
    assert refused.value.columns == ("a", "a2") and refused.value.first_offset == 2

    # The resync: snapshot reads of every row with the new schema, after the rename.
    bronze.rows(RENAMED, {"id": 1, "a2": "one"}, {"id": 2, "a2": "TWO"}, op="r")  # offsets 3, 4
    bronze.flush()
    before = CompletedResync(TABLE, 0, first_offset=1, last_offset=4)  # began before the rename
    unfinished = CompletedResync(TABLE, 0, first_offset=3, last_offset=9)  # not in bronze yet
    done = CompletedResync(TABLE, 0, first_offset=3, last_offset=4)
    for resync in (before, unfinished):
        with pytest.raises(SchemaNeedsResync):
            list(unconsumed_reads(lake.reader(), TABLE, ConsumedOffsets(), [resync]))
    reads = list(unconsumed_reads(lake.reader(), TABLE, consumed, [done]))
    assert sum(r.frame.height for r in reads) == 3
    assert check_schema_versions(lake, TABLE, [done]).passed
    assert not check_schema_versions(lake, TABLE, [before]).passed
    # On a quiet table the topic's end when the resync is asked for is the rename's own first
    # record (offset 2, binlog position 1002): the signal's binlog position decides.
    asked_after = CompletedResync(TABLE, 0, 2, 4, BinlogPosition("mariadb-bin.000001", 1003))
    asked_before = CompletedResync(TABLE, 0, 2, 4, BinlogPosition("mariadb-bin.000001", 1001))
    assert check_schema_versions(lake, TABLE, [asked_after]).passed
    assert not check_schema_versions(lake, TABLE, [asked_before]).passed


def test_a_not_null_column_of_unknown_implicit_default_is_refused(settings, resources):
    bronze = WorkerBronze(settings, TABLE)
    bronze.rows(V1, {"id": 1, "a": "one"})
    unknown = pa.field("bin", pa.binary(), nullable=False, metadata={DEFAULT_UNKNOWN_KEY: b"true"})
    bronze.rows(V1.append(unknown), {"id": 2, "a": "two", "bin": b"\x00\x00"})
    bronze.flush()
    message = refusal_message(run_silver(settings, resources))
    assert "column 'bin' changed from (absent) to binary NOT NULL" in message
    assert "implicit default" in message


def test_a_table_of_one_schema_version_reads_as_before(settings):
    bronze = WorkerBronze(settings, TABLE)
    bronze.rows(V1, {"id": 1, "a": "one"})
    bronze.flush()
    read = BronzeLake(storage_url=settings.lake_url).read_table(TABLE)
    assert read.column_defaults == {}
    assert read.frame.select("id", "a").rows() == [(1, "one")]
    assert pl.Series(read.frame.columns).is_in(["c"]).sum() == 0


def test_the_default_of_a_personal_data_column_is_masked_like_its_values(
    settings, resources, monkeypatch
):
    from binlake.settings import load_settings
    from binlake.silver.pii import PiiPolicy

    monkeypatch.setenv("BINLAKE_SILVER__PII_COLUMNS", '["shop.products.n"]')
    masking = load_settings()
    bronze = WorkerBronze(settings, TABLE)
    bronze.rows(V1, {"id": 1, "a": "one"})
    bronze.flush()
    assert run_silver(masking, resources).success
    bronze.rows(WITH_DEFAULTS, {"id": 2, "a": "two", "c": 7, "n": "y", "plain": None})
    bronze.flush()
    assert run_silver(masking, resources).success
    digest = PiiPolicy.from_settings(masking.silver).digest
    rows = silver(settings)
    assert (rows[1]["n"], rows[2]["n"]) == (digest("x"), digest("y"))


def test_a_rebuild_past_a_rename_is_refused_and_one_before_it_is_not(settings):
    bronze = WorkerBronze(settings, TABLE)
    bronze.rows(V1, {"id": 1, "a": "one"}, {"id": 2, "a": "two"})  # offsets 0, 1
    bronze.rows(RENAMED, {"id": 2, "a2": "TWO"})  # offset 2
    bronze.flush()

    with pytest.raises(SchemaNeedsResync, match=r"\(a string\) -> \(a2 string\)"):
        rebuild(settings, TABLE, AsOf(offsets={0: 2}))
    rebuilt = rebuild(settings, TABLE, AsOf(offsets={0: 1}))
    assert rebuilt.table.read_current().sort("id").select("id", "a").rows() == [
        (1, "one"),
        (2, "two"),
    ]


def test_finished_resyncs_in_the_lake_are_what_heals_a_step(settings):
    """`completed_resyncs` reads the lake's resync records: a resync's reads come after the
    topic's end when it was asked for, and end before the topic's end once they were all in
    Kafka; one Debezium did not finish (or that ended otherwise) heals nothing."""
    storage = LakeStorage.from_url(settings.lake_url)
    log = ResyncLog(storage)

    for resync_id, start, end, status in (
        ("20261207T100000Z-1", {0: 3}, {0: 5}, "SUCCEEDED"),
        ("20261207T100000Z-2", {0: 7}, {0: 9}, "ABORTED"),
        ("20261207T100000Z-3", {0: 12}, None, None),
    ):
        log.record_request(_resync_request(resync_id, 4, start))
        if end is not None:
            log.record_completion(
                ResyncCompletion(resync_id, TABLE, "2026-12-07T10:01:00+00:00", status, 2, end)
            )
    signal = BinlogPosition("mariadb-bin.000001", 4)
    assert completed_resyncs(storage, TABLE) == [CompletedResync(TABLE, 0, 3, 4, signal)]
    assert completed_resyncs(storage, "shop.other") == []


def _resync_request(
    resync_id: str, signal_pos: int, start_offsets: dict[int, int] | None = None
) -> ResyncRequest:
    return ResyncRequest(
        id=resync_id,
        table=TABLE,
        reason="test",
        requested_at="2026-12-07T10:00:00+00:00",
        signal_position=BinlogPosition("mariadb-bin.000001", signal_pos),
        topic="binlake.shop.products",
        start_offsets=start_offsets or {0: 0},
    )


@pytest.mark.parametrize(
    ("signal_pos", "superseded"),
    [(5000, False), (500, True)],
    ids=["asked-after-the-rename", "asked-before-the-rename"],
)
def test_a_refusal_while_a_resync_is_under_way(
    settings, resources, resyncs_requested, monkeypatch, signal_pos: int, superseded: bool
):
    """One asked for after the rename will heal it: no other is started. One asked for before
    it never can (its rows have the old schema): it is superseded and a new one started."""
    bronze = WorkerBronze(settings, TABLE)
    bronze.rows(V1, {"id": 1, "a": "one"})
    bronze.flush()
    bronze.rows(RENAMED, {"id": 1, "a2": "ONE"})  # offset 1, binlog position 1001
    bronze.flush()
    log = ResyncLog(LakeStorage.from_url(settings.lake_url))
    running = ResyncState(_resync_request("20261207T100000Z-7", signal_pos))
    log.record_request(running.request)
    monkeypatch.setattr(
        schema_heal,
        "resync_in_progress",
        lambda settings, table: (log.pending(table) or [None])[-1],
    )

    message = refusal_message(run_silver(settings, resources))

    assert "SchemaNeedsResync" in message
    if superseded:
        assert log.state(TABLE, running.request.id).completion.status == "SUPERSEDED"
        assert [t for t, _ in resyncs_requested] == [TABLE]
        assert "resync resync-1 started automatically" in message
    else:
        assert f"resync {running.request.id} is under way (snapshotting)" in message
        assert resyncs_requested == []


# ALTER TABLE MODIFY a INT: a type family change, no type holds both
RETYPED = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("a", pa.int32())])


def test_a_type_change_healed_by_a_resync_replaces_the_column(settings, resources):
    """Refused (loudly) until a resync re-read every row with the new type; then silver takes
    the new type and the re-read values."""
    bronze = WorkerBronze(settings, TABLE)
    bronze.rows(V1, {"id": 1, "a": "1"}, {"id": 2, "a": "2"})
    bronze.flush()
    assert run_silver(settings, resources).success
    bronze.rows(RETYPED, {"id": 2, "a": 20})  # offset 2, binlog position 1002
    bronze.flush()
    assert not run_silver(settings, resources).success
    bronze.rows(RETYPED, {"id": 1, "a": 1}, {"id": 2, "a": 20}, op="r")  # offsets 3, 4
    bronze.flush()
    log = ResyncLog(LakeStorage.from_url(settings.lake_url))
    resync = _resync_request("20261207T100000Z-9", 1003)
    log.record_request(resync)
    log.record_completion(
        ResyncCompletion(resync.id, TABLE, "2026-12-07T10:01:00+00:00", "SUCCEEDED", 2, {0: 5})
    )

    assert run_silver(settings, resources).success
    current = SilverLake(storage_url=settings.lake_url).table(TABLE).read_current()
    assert current.schema["a"] == pl.Int32
    assert sorted(current.select("id", "a").rows()) == [(1, 1), (2, 20)]

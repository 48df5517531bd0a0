"""TRUNCATE TABLE in silver: from its source position on, no row changed before it survives.

Real bronze Parquet files, real Delta tables; the change order is (binlog file, pos, row,
offset), so a change before the TRUNCATE has a smaller binlog position (`pos=`).
"""

from datetime import UTC, datetime

import dagster as dg
import polars as pl
import pyarrow as pa
import pytest

from binlake.bronze.layout import OFFSET, OP, SOURCE_POS
from binlake.gold.changed_hours import changed_order_hours
from binlake.silver.consumed import ConsumedOffsets, TruncatedAt
from binlake.silver.delta_table import DELETED
from binlake.silver.logic import (
    after_truncate,
    is_row_change,
    is_tombstone,
    is_truncate,
    latest_changes,
    newest_truncate,
)
from binlake.silver.rebuild import AsOf
from dagster_defs.resources import SilverLake
from dagster_defs.silver.assets import build_silver_asset
from dagster_defs.silver.checks import build_reconciliation_check
from dagster_defs.silver.history_assets import build_history_asset
from tests.support.dagster_runs import materialize_ok
from tests.support.rebuild import rebuild

ORDERS = "shop.orders"


def run_silver(settings, resources, table=ORDERS):
    materialize_ok([build_silver_asset(table, settings)], resources())


def live(settings, table=ORDERS) -> list[tuple]:
    current = SilverLake(storage_url=settings.lake_url).table(table).read_current()
    return [tuple(r) for r in current.sort("id").select("id", "status", OP).iter_rows()]


def stored(settings, table=ORDERS) -> pl.DataFrame:
    return SilverLake(storage_url=settings.lake_url).table(table).read_all().sort("id")


def test_the_rule_that_tells_a_truncate_from_an_old_tombstone(bronze):
    c = bronze.change
    frame = pl.DataFrame(
        [
            c("c", 0, id=1),
            c("x", 1, id=1),  # a tombstone: no position
            c("t", 2, id=1, no_position=True),  # a tombstone in a file from before TRUNCATE
            c("t", 3, pos=2000),  # a TRUNCATE: always a position
            c("c", 4, id=2),
        ]
    )
    assert frame.select(is_tombstone()).to_series().to_list() == [False, True, True, False, False]
    assert frame.select(is_truncate()).to_series().to_list() == [False, False, False, True, False]
    assert frame.select(is_row_change()).to_series().to_list() == [True, False, False, False, True]
    assert newest_truncate(frame) == TruncatedAt(
        "mariadb-bin.000001", 2000, 0, 3, bronze.base_ts_ms
    )
    assert newest_truncate(frame.filter(~is_truncate())) is None


def test_changes_before_a_truncate_in_the_same_batch_are_dropped_and_after_it_kept(bronze):
    c = bronze.change
    frame = pl.DataFrame(
        [
            c("c", 0, pos=100, id=1, status="new"),
            c("c", 1, pos=110, id=2, status="new"),
            c("t", 2, pos=200),
            c("c", 3, pos=300, id=3, status="new"),
            c("u", 4, pos=310, id=2, status="paid"),  # key 2 inserted again after the truncate
            c("t", 5, pos=400),  # a second truncate
            c("c", 6, pos=500, id=4, status="new"),
            c("c", 7, pos=50, id=9, status="late"),  # older than both (e.g. a re-send)
        ]
    )
    at = newest_truncate(frame)
    assert at is not None and at.pos == 400
    latest = latest_changes(frame, ["id"], at)
    assert latest.select("id", "status").rows() == [(4, "new")]
    assert after_truncate(frame, None).height == frame.height


def test_a_truncate_empties_silver_and_keeps_what_follows_it(settings, bronze, resources):
    c = bronze.change
    bronze.write(
        ORDERS,
        [
            c("c", 0, pos=100, id=1, status="new"),
            c("c", 1, pos=110, id=2, status="new"),
            c("c", 2, pos=120, id=3, status="new"),
            c("d", 3, pos=130, id=3, status="new"),
        ],
    )
    run_silver(settings, resources)
    assert live(settings) == [(1, "new", "c"), (2, "new", "c")]

    bronze.write(
        ORDERS,
        [
            c("u", 4, pos=140, id=1, status="paid"),  # before the truncate, same batch
            c("t", 5, pos=200),
            c("c", 6, pos=300, id=2, status="again"),
            c("c", 7, pos=310, id=5, status="new"),
            c("u", 8, pos=320, id=5, status="paid"),
        ],
    )
    run_silver(settings, resources)
    assert live(settings) == [(2, "again", "c"), (5, "paid", "u")]
    everything = stored(settings)
    truncated = everything.filter(pl.col(OP) == "t")
    # key 1 became the truncate's tombstone (its other columns nulled, the truncate's position)
    assert truncated.select("id", "status", SOURCE_POS, OFFSET, DELETED).rows() == [
        (1, None, 200, 5, True)
    ]
    # key 3 was deleted before: its delete tombstone stays as it was
    assert everything.filter(pl.col("id") == 3).select(OP, DELETED).rows() == [("d", True)]

    table = SilverLake(storage_url=settings.lake_url).table(ORDERS)
    assert table.consumed().truncated_at == TruncatedAt(
        "mariadb-bin.000001", 200, 0, 5, bronze.base_ts_ms
    )


def test_a_late_change_from_before_the_truncate_never_brings_a_row_back(
    settings, bronze, resources
):
    c = bronze.change
    bronze.write(ORDERS, [c("c", 0, pos=100, id=1, status="new"), c("t", 1, pos=200)])
    run_silver(settings, resources)
    assert live(settings) == []
    bronze.write(ORDERS, [c("c", 2, pos=300, id=2, status="new")])  # a commit without truncate
    run_silver(settings, resources)

    # Debezium re-sends changes from before the truncate (new offsets, old positions): one of
    # a key silver holds as the truncate's tombstone, one of a key silver never saw.
    bronze.write(
        ORDERS,
        [
            c("u", 3, pos=150, id=1, status="paid"),
            c("c", 4, pos=160, id=7, status="new"),
            c("t", 5, pos=200),  # the truncate itself, re-sent: changes nothing
            c("u", 6, pos=400, id=2, status="paid"),
        ],
    )
    run_silver(settings, resources)
    assert live(settings) == [(2, "paid", "u")]
    assert 7 not in stored(settings)["id"].to_list()
    table = SilverLake(storage_url=settings.lake_url).table(ORDERS)
    assert table.consumed().truncated_at.offset == 1  # the first truncate, still recorded


def test_a_table_without_primary_key_is_truncated_too(settings, bronze, resources):
    c = bronze.change
    write = {"columns": [("a", pa.int64()), ("b", pa.string())], "primary_key": []}
    bronze.write(
        "shop.logs", [c("c", 0, pos=100, a=1, b="x"), c("c", 1, pos=110, a=2, b="y")], **write
    )
    run_silver(settings, resources, "shop.logs")
    bronze.write("shop.logs", [c("t", 2, pos=200), c("c", 3, pos=300, a=1, b="x")], **write)
    run_silver(settings, resources, "shop.logs")
    current = SilverLake(storage_url=settings.lake_url).table("shop.logs").read_current()
    assert current.select("a", "b", OP).rows() == [(1, "x", "c")]


def test_a_rebuild_honours_the_truncate(settings, bronze):
    c = bronze.change
    bronze.write(ORDERS, [c("c", 0, pos=100, id=1, status="new"), c("c", 1, pos=110, id=2)])
    bronze.write(ORDERS, [c("t", 2, pos=200), c("c", 3, pos=300, id=3, status="new")])
    rebuilt = rebuild(settings, ORDERS, AsOf(offsets={0: 3}))
    assert rebuilt.table.read_current().select("id", "status").rows() == [(3, "new")]
    before = rebuild(settings, ORDERS, AsOf(offsets={0: 1}))
    assert sorted(before.table.read_current()["id"].to_list()) == [1, 2]


def test_truncated_orders_show_up_as_changed_gold_hours(settings, bronze, resources):
    c = bronze.change
    ten, eleven = datetime(2024, 6, 1, 10, 5), datetime(2024, 6, 1, 11, 30)
    bronze.write(
        ORDERS,
        [
            c("c", 0, pos=100, id=1, status="new", created_at=ten),
            c("c", 1, pos=110, id=2, status="new", created_at=eleven),
        ],
    )
    run_silver(settings, resources)
    table = SilverLake(storage_url=settings.lake_url).table(ORDERS)
    version = table.version()
    bronze.write(ORDERS, [c("t", 2, pos=200)])
    run_silver(settings, resources)

    changes = table.changes_since(version)
    assert changes is not None and changes.height
    assert changed_order_hours(changes, pl.DataFrame(), pl.DataFrame()) == [
        datetime(2024, 6, 1, 10),
        datetime(2024, 6, 1, 11),
    ]


def test_truncated_at_round_trips_through_commit_metadata():
    consumed = ConsumedOffsets(manifest_cursor=7)
    assert "truncated_at" not in consumed.to_json()  # unchanged for tables never truncated
    position = TruncatedAt("mariadb-bin.000002", 4, 0, 12, 99)
    assert consumed.truncate_at(position)
    assert not consumed.truncate_at(position)  # re-sent: nothing new
    assert not consumed.truncate_at(TruncatedAt("mariadb-bin.000001", 9, 0, 30, 99))  # older
    assert ConsumedOffsets.from_json(consumed.to_json()).truncated_at == position


@pytest.mark.parametrize("op", ["x", "t"])
def test_tombstones_old_and_new_never_truncate(settings, bronze, resources, op):
    c = bronze.change
    bronze.write(ORDERS, [c("c", 0, pos=100, id=1, status="new")])
    run_silver(settings, resources)
    bronze.write(ORDERS, [c(op, 1, id=1, no_position=True)])
    run_silver(settings, resources)
    assert live(settings) == [(1, "new", "c")]


# -- history (SCD2) ------------------------------------------------------------------------------


def run_history(settings, resources, table=ORDERS):
    materialize_ok([build_history_asset(table, settings)], resources())


def history(settings, table=ORDERS) -> list[tuple]:
    stored = SilverLake(storage_url=settings.lake_url).history(table).read_all()
    return [
        tuple(r)
        for r in stored.sort("id", SOURCE_POS, OFFSET)
        .select("id", "status", "op", SOURCE_POS, "valid_from", "valid_to", "is_current")
        .iter_rows()
    ]


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def test_a_truncate_closes_every_current_version_at_its_position(settings, bronze, resources):
    c, t0 = bronze.change, bronze.base_ts_ms
    bronze.write(
        ORDERS,
        [
            c("c", 0, pos=100, ts_ms=t0, id=1, status="new"),
            c("c", 1, pos=110, ts_ms=t0, id=2, status="new"),
            c("d", 2, pos=120, ts_ms=t0 + 1000, id=2, status="new"),
        ],
    )
    run_history(settings, resources)
    bronze.write(
        ORDERS,
        [
            c("c", 3, pos=130, ts_ms=t0 + 2000, id=3, status="new"),  # same batch, before it
            c("t", 4, pos=200, ts_ms=t0 + 3000),
            c("c", 5, pos=300, ts_ms=t0 + 4000, id=1, status="again"),
        ],
    )
    run_history(settings, resources)
    s1, s2, s3, s4 = (at(t0 + n * 1000) for n in (0, 1, 3, 4))
    assert history(settings) == [
        (1, "new", "c", 100, s1, s3, False),
        (1, None, "t", 200, s3, s3, False),  # closed by the truncate, zero-length like a delete
        (1, "again", "c", 300, s4, None, True),
        (2, "new", "c", 110, s1, s2, False),
        (2, None, "d", 120, s2, s2, False),  # deleted before: the truncate adds nothing
        (3, "new", "c", 130, at(t0 + 2000), s3, False),
        (3, None, "t", 200, s3, s3, False),
    ]

    # A late change from before the truncate, of a key never seen: closed at the truncate too.
    bronze.write(ORDERS, [c("c", 6, pos=150, ts_ms=t0 + 2500, id=9, status="late")])
    run_history(settings, resources)
    late = [v for v in history(settings) if v[0] == 9]
    assert late == [
        (9, "late", "c", 150, at(t0 + 2500), s3, False),
        (9, None, "t", 200, s3, s3, False),
    ]
    current = SilverLake(storage_url=settings.lake_url).history(ORDERS).read_current()
    assert current.select("id", "status").rows() == [(1, "again")]


# -- reconciliation --------------------------------------------------------------------------------


@pytest.mark.parametrize(("source_rows", "passed"), [(1, True), (3, False)])
def test_reconciliation_counts_only_what_survived_the_truncate(
    bronze, resources, source_rows, passed
):
    c = bronze.change
    bronze.write(
        ORDERS,
        [
            c("c", 0, pos=100, id=1, status="new"),
            c("c", 1, pos=110, id=2, status="new"),
            c("t", 2, pos=200),
            c("c", 3, pos=300, id=3, status="new"),
        ],
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [
                build_silver_asset(ORDERS, bronze.settings),
                build_reconciliation_check(ORDERS, bronze.settings),
            ],
            resources=resources({ORDERS: source_rows}, None),
            instance=instance,
            raise_on_error=False,
        )
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed is passed
    assert evaluation.metadata["silver_rows"].value == 1

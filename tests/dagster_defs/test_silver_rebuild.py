"""Point-in-time rebuilds of silver from bronze alone."""

from datetime import UTC, datetime

import pytest

from binlake.bronze.manifest import Manifest
from binlake.errors import FinalError
from binlake.silver.rebuild import AsOf
from binlake.storage import LakeStorage
from compactor.expiry import retention_entry
from dagster_defs.resources import SilverLake
from tests.support.rebuild import rebuild

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
ORDERS = "shop.orders"


def test_as_of_parses_times_and_offsets():
    assert AsOf.parse("2024-06-01T10:00:00Z").source_ts_ms == int(
        datetime(2024, 6, 1, 10, tzinfo=UTC).timestamp() * 1000
    )
    assert AsOf.parse("2024-06-01 10:00:00").label == "ts=20240601T100000000Z"  # UTC by default
    assert AsOf.parse("17").offsets == {0: 17}
    assert AsOf.parse("0:17,2:5").offsets == {0: 17, 2: 5}
    assert AsOf.parse("0:17,2:5").label == "offsets=0-17_2-5"
    assert AsOf.parse("mariadb-bin.000003:4567").binlog == ("mariadb-bin.000003", 4567)
    assert AsOf.parse("mariadb-bin.000003:4567").label == "binlog=mariadb-bin.000003-4567"
    assert AsOf.parse("2024-06-01T10:00").source_ts_ms is not None  # a time, not FILE:POS
    with pytest.raises(FinalError, match="neither a time"):
        AsOf.parse("yesterday")


@pytest.fixture
def shop_history(bronze):
    """Order 1 created, paid a minute later, order 2 created and deleted a minute after that."""
    c, t0 = bronze.change, bronze.base_ts_ms
    bronze.write(ORDERS, [c("c", 0, ts_ms=t0, id=1, status="new")])
    bronze.write(ORDERS, [c("u", 1, ts_ms=t0 + MINUTE_MS, id=1, status="paid")])
    bronze.write(ORDERS, [c("c", 2, ts_ms=t0 + MINUTE_MS, id=2, status="new")])
    bronze.write(ORDERS, [c("d", 3, ts_ms=t0 + 2 * MINUTE_MS, id=2, status="new")])
    return t0


def state(rebuilt) -> list[tuple]:
    return rebuilt.table.read_current().sort("id").select("id", "status").rows()


def test_rebuild_as_of_a_time_keeps_only_what_was_committed_by_then(settings, shop_history):
    t0 = shop_history
    assert state(rebuild(settings, ORDERS, AsOf(source_ts_ms=t0))) == [(1, "new")]
    one_minute = rebuild(settings, ORDERS, AsOf(source_ts_ms=t0 + MINUTE_MS))
    assert state(one_minute) == [(1, "paid"), (2, "new")]
    assert (one_minute.changes_read, one_minute.rows) == (3, 2)
    assert state(rebuild(settings, ORDERS, AsOf(source_ts_ms=t0 + 2 * MINUTE_MS))) == [(1, "paid")]
    assert "/rebuilds/silver/shop/orders/ts=" in one_minute.table.uri


def test_rebuild_as_of_an_offset(settings, shop_history):
    assert state(rebuild(settings, ORDERS, AsOf.parse("0:2"))) == [(1, "paid"), (2, "new")]
    assert rebuild(settings, ORDERS, AsOf.parse("0:3")).table.consumed().ranges == {
        ("binlake.shop.orders", 0): [(0, 3)]
    }


def test_a_rebuild_is_never_overwritten_and_never_empty(settings, shop_history):
    rebuild(settings, ORDERS, AsOf.parse("1"))
    with pytest.raises(FinalError, match="already exists"):
        rebuild(settings, ORDERS, AsOf.parse("1"))
    with pytest.raises(FinalError, match="at or before"):
        rebuild(settings, ORDERS, AsOf(source_ts_ms=shop_history - 1))


def test_a_rebuild_of_a_table_with_expired_bronze_is_refused(settings, bronze, shop_history):
    t0 = shop_history
    later = bronze.write(
        ORDERS, [bronze.change("u", 4, ts_ms=t0 + 2 * HOUR_MS, id=1, status="sent")]
    )
    lake = Manifest(LakeStorage.from_url(settings.lake_url))
    expired = lake.entries_for(ORDERS)[:-1]
    lake.append(
        retention_entry((ORDERS, later.topic, 0), expired, datetime(2024, 7, 1, tzinfo=UTC))
    )
    for as_of in (AsOf(source_ts_ms=t0 + 3 * HOUR_MS), AsOf.parse("0:4")):
        with pytest.raises(FinalError) as refused:
            rebuild(settings, ORDERS, as_of)
        message = str(refused.value)
        assert "bronze of shop.orders was expired before 2024-06-01T11:00:00+00:00" in message
        assert "compactor.bronze_retention_days" in message and as_of.label in message
        assert "from 2024-06-01T12:00:00+00:00 on" in message  # the oldest change bronze holds
        assert "Delta time travel" in message
    assert (
        not SilverLake(storage_url=settings.lake_url)
        .rebuild(ORDERS, AsOf.parse("0:4").label)
        .exists()
    )


def test_rebuild_as_of_a_binlog_position_keeps_what_the_binlog_had_before_it(settings, bronze):
    """Changes before the position, also in earlier binlog files, are in; the rest is not."""
    c, t0 = bronze.change, bronze.base_ts_ms
    old, new = "mariadb-bin.000001", "mariadb-bin.000002"
    bronze.write(ORDERS, [c("c", 0, ts_ms=t0, file=old, pos=9000, id=1, status="new")])
    bronze.write(ORDERS, [c("c", 1, ts_ms=t0, file=new, pos=400, id=2, status="new")])
    bronze.write(ORDERS, [c("u", 2, ts_ms=t0, file=new, pos=800, id=1, status="paid")])
    assert state(rebuild(settings, ORDERS, AsOf.parse(f"{new}:800"))) == [(1, "new"), (2, "new")]
    assert state(rebuild(settings, ORDERS, AsOf.parse(f"{new}:801"))) == [(1, "paid"), (2, "new")]
    assert state(rebuild(settings, ORDERS, AsOf.parse(f"{old}:9001"))) == [(1, "new")]

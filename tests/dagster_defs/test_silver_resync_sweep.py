"""Silver's sweep at the end of a resync, materialized by Dagster from real bronze Parquet files
and resync records in a real lake (the Debezium side is tests/integration/test_resync.py)."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable

from binlake.bronze.layout import OP, SOURCE_FILE, SOURCE_POS, SOURCE_SNAPSHOT
from binlake.silver.delta_table import DELETED
from binlake.silver.resync import (
    INCREMENTAL,
    BinlogPosition,
    ResyncCompletion,
    ResyncLog,
    ResyncRequest,
)
from binlake.silver.resync_sweep import SWEPT_METADATA_KEY
from dagster_defs.resources import SilverLake
from dagster_defs.silver.assets import build_silver_asset
from tests.support.lake import change

TABLE = "shop.orders"
BINLOG = "mariadb-bin.000001"
SIGNAL = BinlogPosition(BINLOG, 2000)


@pytest.fixture
def materialize(settings, resources):
    def run() -> dict:
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize(
                [build_silver_asset(TABLE, settings)], resources=resources(), instance=instance
            )
            assert result.success
            (event,) = result.get_asset_materialization_events()
            return {k: v.value for k, v in event.materialization.metadata.items()}

    return run


def _read(offset: int, pos: int, **columns) -> dict:
    """An incremental snapshot's read of one row, as bronze keeps it."""
    row = change("r", offset, pos=pos, **columns)
    row[SOURCE_SNAPSHOT] = INCREMENTAL
    return row


def _request(settings, start_offset: int) -> ResyncRequest:
    request = ResyncRequest(
        id="20261207T100000Z-abcdef01",
        table=TABLE,
        reason="test",
        requested_at=datetime(2026, 12, 7, 10, tzinfo=UTC).isoformat(),
        signal_position=SIGNAL,
        topic=settings.topic_for(TABLE),
        start_offsets={0: start_offset},
    )
    ResyncLog.of(settings).record_request(request)
    return request


def _complete(settings, request: ResyncRequest, end_offset: int) -> None:
    ResyncLog.of(settings).record_completion(
        ResyncCompletion(
            id=request.id,
            table=TABLE,
            completed_at=datetime(2026, 12, 7, 10, 1, tzinfo=UTC).isoformat(),
            status="SUCCEEDED",
            rows_scanned=4,
            end_offsets={0: end_offset},
        )
    )


def _silver(settings) -> pl.DataFrame:
    return SilverLake(storage_url=settings.lake_url).table(TABLE).read_all().sort("id")


def _live_ids(settings) -> list[int]:
    return _silver(settings).filter(~pl.col(DELETED))["id"].to_list()


def test_rows_the_resync_did_not_see_become_tombstones_once(settings, bronze, materialize):
    c = bronze.change
    bronze.write(TABLE, [c("c", i, id=i + 1, customer_id=10, status="new") for i in range(6)])
    materialize()
    assert _live_ids(settings) == [1, 2, 3, 4, 5, 6]
    request = _request(settings, start_offset=6)
    bronze.write(
        TABLE,
        [
            # an earlier resync's read of 6 (before this one's signal): not seen by this one
            _read(6, 1500, id=6, customer_id=10, status="new"),
            _read(7, 2100, id=1, customer_id=10, status="new"),
            _read(8, 2100, id=2, customer_id=10, status="paid"),
            # 5 changed by the stream after the signal: Debezium dropped its read, it stays
            c("u", 9, pos=2050, id=5, customer_id=10, status="shipped"),
            _read(10, 2100, id=4, customer_id=10, status="new"),
            # a row the source has and silver never had (written behind the binlog's back)
            _read(11, 2100, id=7, customer_id=11, status="new"),
            _read(12, 2100, id=7, customer_id=11, status="new"),
        ],
    )
    # Debezium has not said it is over: nothing is swept whatever silver merged
    metadata = materialize()
    assert "resyncs_swept" not in metadata
    assert _live_ids(settings) == [1, 2, 3, 4, 5, 6, 7]

    _complete(settings, request, end_offset=13)
    metadata = materialize()

    assert metadata["resyncs_swept"] == request.id
    assert _live_ids(settings) == [1, 2, 4, 5, 7]
    silver = _silver(settings)
    swept = silver.filter(pl.col("id").is_in([3, 6]))
    assert swept[DELETED].to_list() == [True, True]
    assert swept[OP].to_list() == ["d", "d"]
    assert swept.select(SOURCE_FILE, SOURCE_POS).unique().rows() == [(BINLOG, 2000)]
    assert swept["status"].null_count() == 2  # a tombstone keeps no values
    state = ResyncLog.of(settings).state(TABLE, request.id)
    assert state.sweep is not None and not state.pending
    assert (state.sweep.keys_seen, state.sweep.rows_tombstoned) == (4, 2)
    assert (state.sweep.first_offsets, state.sweep.last_offsets) == ({0: 7}, {0: 12})
    delta = DeltaTable(SilverLake(storage_url=settings.lake_url).table(TABLE).uri)
    commits = [c for c in delta.history() if c.get(SWEPT_METADATA_KEY) == request.id]
    assert len(commits) == 1

    # once: a later run does not sweep again, and an older change re-sent cannot revive 3
    bronze.write(TABLE, [c("u", 13, pos=1002, id=3, customer_id=12, status="paid")])
    metadata = materialize()
    assert "resyncs_swept" not in metadata
    assert _live_ids(settings) == [1, 2, 4, 5, 7]


def test_no_sweep_before_bronze_holds_the_resync_end(settings, bronze, materialize):
    c = bronze.change
    bronze.write(TABLE, [c("c", i, id=i + 1, customer_id=10, status="new") for i in range(3)])
    request = _request(settings, start_offset=3)
    bronze.write(TABLE, [_read(3, 2100, id=1, customer_id=10, status="new")])
    _complete(settings, request, end_offset=6)  # offsets 4 and 5 are not in bronze yet

    metadata = materialize()

    assert "holds" in metadata["resyncs_waiting"] and request.id in metadata["resyncs_waiting"]
    assert _live_ids(settings) == [1, 2, 3]
    bronze.write(
        TABLE,
        [
            _read(4, 2100, id=2, customer_id=10, status="new"),
            _read(5, 2100, id=3, customer_id=10, status="new"),
        ],
    )
    metadata = materialize()
    assert metadata["resyncs_swept"] == request.id
    assert _live_ids(settings) == [1, 2, 3]  # every key seen: nothing removed
    state = ResyncLog.of(settings).state(TABLE, request.id)
    assert state.sweep is not None and state.sweep.rows_tombstoned == 0


def test_a_table_the_source_emptied_is_swept_whole(settings, bronze, materialize):
    c = bronze.change
    bronze.write(TABLE, [c("c", i, id=i + 1, customer_id=10, status="new") for i in range(3)])
    request = _request(settings, start_offset=3)
    _complete(settings, request, end_offset=3)  # Debezium read no row at all

    metadata = materialize()

    assert metadata["resyncs_swept"] == request.id
    assert _live_ids(settings) == []
    assert _silver(settings)[DELETED].to_list() == [True, True, True]

"""The resync engine's own logic: notifications, records in the lake, refusals, added tables.

The Debezium round trip (signal, notifications, re-read rows) runs against the real stack in
tests/integration/test_resync.py.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from binlake.settings import Settings, load_settings
from binlake.silver.resync import (
    BinlogPosition,
    Notification,
    ResyncCompletion,
    ResyncError,
    ResyncInProgressError,
    ResyncLog,
    ResyncRequest,
    ResyncSweep,
    captured_tables,
    committed_position,
    completion_of,
    fence_row,
    new_resync_id,
    progress_of,
    request_resync,
    resync_in_progress,
    signal_row,
    tables_added,
)
from cdc.connect_client import SourceOffset
from cdc.connector_config import build_connector_config

TABLE = "shop.orders"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("BINLAKE_"):
            monkeypatch.delenv(name)
    return load_settings(state_dir=tmp_path / "state", storage_url=str(tmp_path / "lake"))


def _note(resync_id: str, kind: str, aggregate: str = "Incremental Snapshot", **data: str):
    return Notification(resync_id, aggregate, kind, dict(data), 1796634791574)


# What Debezium 3.0.7 sent for a 10-row table (recorded on the local stack).
RECORDED = [
    _note("2148c051", "STARTED", "Initial Snapshot", connector_name="binlake"),
    _note("2148c051", "COMPLETED", "Initial Snapshot", connector_name="binlake"),
    _note("rs-1", "STARTED", connector_name="binlake", data_collections="shop.orders"),
    _note(
        "rs-1",
        "IN_PROGRESS",
        current_collection_in_progress="shop.orders",
        maximum_key="10",
        last_processed_key="10",
    ),
    _note(
        "rs-1",
        "TABLE_SCAN_COMPLETED",
        scanned_collection="shop.orders",
        total_rows_scanned="10",
        status="SUCCEEDED",
    ),
    _note("rs-1", "COMPLETED", connector_name="binlake"),
]


def test_progress_follows_the_notifications_of_its_own_signal():
    assert progress_of("rs-1", TABLE, RECORDED[:2]).started is False
    running = progress_of("rs-1", TABLE, RECORDED[:4])
    assert running.started and running.finished is None
    assert (running.last_processed_key, running.maximum_key) == ("10", "10")
    done = progress_of("rs-1", TABLE, RECORDED)
    assert (done.finished, done.rows_scanned, done.status) == ("COMPLETED", 10, "SUCCEEDED")
    assert progress_of("rs-2", TABLE, RECORDED).started is False  # another resync's


def test_an_aborted_snapshot_is_over_but_not_succeeded():
    request = _request("rs-1")
    aborted = progress_of("rs-1", TABLE, [*RECORDED[2:4], _note("rs-1", "ABORTED")])
    completion = completion_of(request, aborted, {0: 12})
    assert completion.status == "ABORTED" and not completion.succeeded


def test_notification_records_with_and_without_the_schema_envelope():
    plain = {
        "id": "rs-1",
        "aggregate_type": "Incremental Snapshot",
        "type": "COMPLETED",
        "additional_data": {"connector_name": "binlake"},
        "timestamp": 17,
    }
    enveloped = {"schema": {"type": "struct"}, "payload": plain}
    for value in (plain, enveloped):
        note = Notification.from_record(json.dumps(value).encode())
        assert note == Notification(
            "rs-1", "Incremental Snapshot", "COMPLETED", {"connector_name": "binlake"}, 17
        )
    assert Notification.from_record(b"not json") is None
    assert Notification.from_record(None) is None
    assert Notification.from_record(b'{"no": "id"}') is None


def test_the_signal_asks_for_an_incremental_snapshot_of_one_table():
    resync_id, kind, data = signal_row("rs-1", TABLE)
    assert (resync_id, kind) == ("rs-1", "execute-snapshot")
    assert json.loads(data) == {"data-collections": [TABLE], "type": "incremental"}


def _request(resync_id: str) -> ResyncRequest:
    return ResyncRequest(
        id=resync_id,
        table=TABLE,
        reason="test",
        requested_at=datetime(2026, 12, 7, 10, tzinfo=UTC).isoformat(),
        signal_position=BinlogPosition("mariadb-bin.000002", 4),
        topic="binlake.shop.orders",
        start_offsets={0: 5, 1: 7},
        notification_offset=3,
    )


def test_records_round_trip_and_are_written_once(settings: Settings):
    log = ResyncLog.of(settings)
    first, second = _request(new_resync_id()), _request("99990101T000000Z-ffffffff")
    log.record_request(first)
    log.record_request(second)
    assert log.ids(TABLE) == [first.id, second.id]  # oldest first
    assert log.state(TABLE, first.id).request == first
    assert [s.stage for s in log.pending(TABLE)] == ["snapshotting", "snapshotting"]

    completion = ResyncCompletion(
        first.id, TABLE, "2026-12-07T10:01:00+00:00", "SUCCEEDED", 9, {0: 20, 1: 7}
    )
    assert log.record_completion(completion) is True
    later = ResyncCompletion(
        first.id, TABLE, "2026-12-07T10:02:00+00:00", "SUCCEEDED", 9, {0: 25, 1: 7}
    )
    assert log.record_completion(later) is False  # the first watcher's record counts
    state = log.state(TABLE, first.id)
    assert state.completion == completion and state.stage == "waiting for silver's sweep"

    log.record_sweep(
        ResyncSweep(first.id, TABLE, "2026-12-07T10:03:00+00:00", 9, 1, 4, {0: 6}, {0: 19})
    )
    assert log.state(TABLE, first.id).stage == "swept"
    assert [s.request.id for s in log.pending(TABLE)] == [second.id]
    with pytest.raises(ResyncError, match="no resync"):
        log.state(TABLE, "missing")


def test_a_second_resync_of_a_table_is_refused_until_the_first_is_swept(settings: Settings):
    ResyncLog.of(settings).record_request(_request("20261207T100000Z-00000001"))
    assert resync_in_progress(settings, TABLE) is not None
    assert resync_in_progress(settings, "shop.products") is None
    # refused before any broker or database is asked
    with pytest.raises(ResyncInProgressError, match=r"20261207T100000Z-00000001.*snapshotting"):
        request_resync(settings, TABLE, reason="again")


def test_only_captured_tables_are_resynced(settings: Settings):
    with pytest.raises(ResyncError, match="not a captured table"):
        request_resync(settings, "shop.nope", reason="test")


def test_tables_added_to_the_connector(settings: Settings):
    before = build_connector_config(settings)
    after = build_connector_config(
        settings.model_copy(update={"tables": [*settings.tables, "shop.refunds"]})
    )
    assert captured_tables(before) == settings.tables  # the list is regex-escaped in the config
    assert tables_added(before, after) == ["shop.refunds"]
    assert tables_added(before, before) == []
    assert tables_added(after, before) == []  # a removed table needs no resync
    # a new connector's initial snapshot reads every table: no resync
    assert tables_added(None, after) == []


def test_the_committed_binlog_position_is_read_from_connect_offsets():
    offsets = [
        SourceOffset(
            partition={"server": "binlake"},
            offset={"ts_sec": 1, "file": "mariadb-bin.000002", "pos": 4866, "row": 1},
        )
    ]
    assert committed_position(offsets) == BinlogPosition("mariadb-bin.000002", 4866)
    assert committed_position([]) is None
    # binlog files order by their sequence number, then positions within one
    assert BinlogPosition("mariadb-bin.000002", 4) > BinlogPosition("mariadb-bin.000001", 9999)


def test_a_fence_is_a_signal_debezium_only_logs():
    fence_id, kind, data = fence_row("20261207T100000Z-abcdef01")
    assert fence_id.startswith("20261207T100000Z-abcdef01-fence-") and len(fence_id) <= 64
    assert kind == "log" and "fence" in json.loads(data)["message"]


def test_an_empty_table_is_a_resync_that_succeeded():
    empty = completion_of(
        _request("rs-1"),
        progress_of(
            "rs-1",
            TABLE,
            [
                *RECORDED[2:3],
                _note(
                    "rs-1",
                    "TABLE_SCAN_COMPLETED",
                    scanned_collection=TABLE,
                    total_rows_scanned="0",
                    status="EMPTY",
                ),
                _note("rs-1", "COMPLETED"),
            ],
        ),
        {0: 5},
    )
    assert empty.status == "EMPTY" and empty.succeeded  # silver's rows of it are swept


def test_a_resync_the_old_task_answered_unknown_schema_is_asked_again_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    from binlake.silver import resync

    asked: list[str] = []

    def request_again(settings, table, *, reason):
        asked.append(reason)
        retry = _request("20261207T110000Z-00000002")
        retry = ResyncRequest(**{**retry.__dict__, "reason": reason})
        resync.ResyncLog.of(settings).record_request(retry)
        return retry

    monkeypatch.setattr(resync, "request_resync", request_again)
    log = ResyncLog.of(settings)
    first = _request("20261207T100000Z-00000001")
    log.record_request(first)
    log.record_completion(
        ResyncCompletion(first.id, TABLE, "2026-12-07T10:01:00+00:00", "UNKNOWN_SCHEMA", 0, {0: 5})
    )
    state = log.state(TABLE, first.id)
    assert not state.pending  # over, and nothing to sweep

    again = resync.resync_again_if_schema_unknown(settings, state)
    assert again is not None and again.reason.startswith(f"retry of {first.id}")
    assert resync.resync_again_if_schema_unknown(settings, state) is None  # not the newest now
    log.record_completion(
        ResyncCompletion(again.id, TABLE, "2026-12-07T11:01:00+00:00", "UNKNOWN_SCHEMA", 0, {0: 5})
    )
    assert resync.resync_again_if_schema_unknown(settings, log.state(TABLE, again.id)) is None
    assert len(asked) == 1

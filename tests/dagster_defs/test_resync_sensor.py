"""The ``resync_progress`` sensor asks silver to sweep a resync Debezium finished (the reading of
Debezium's notifications is tested against the real stack in tests/integration/test_resync.py)."""

from datetime import UTC, datetime

import dagster as dg

from binlake.silver.resync import (
    BinlogPosition,
    ResyncCompletion,
    ResyncLog,
    ResyncRequest,
    ResyncSweep,
)
from dagster_defs.keys import silver_key
from dagster_defs.resync.sensors import build_resync_sensor

TABLE = "shop.orders"
RESYNC_ID = "20261207T100000Z-00000001"


def _evaluate(settings, resources) -> dg.SensorResult:
    sensor = build_resync_sensor(settings)
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources())
        return sensor(context)


def _record(settings, *, swept: bool) -> None:
    log = ResyncLog.of(settings)
    log.record_request(
        ResyncRequest(
            id=RESYNC_ID,
            table=TABLE,
            reason="test",
            requested_at=datetime(2026, 12, 7, 10, tzinfo=UTC).isoformat(),
            signal_position=BinlogPosition("mariadb-bin.000001", 4),
            topic=settings.topic_for(TABLE),
            start_offsets={0: 0},
        )
    )
    log.record_completion(
        ResyncCompletion(RESYNC_ID, TABLE, "2026-12-07T10:01:00+00:00", "SUCCEEDED", 3, {0: 3})
    )
    if swept:
        log.record_sweep(ResyncSweep(RESYNC_ID, TABLE, "2026-12-07T10:02:00+00:00", 3, 0, 1))


def test_a_finished_resync_not_swept_gets_a_silver_run(settings, resources):
    _record(settings, swept=False)
    result = _evaluate(settings, resources)
    [request] = result.run_requests
    assert request.asset_selection == [silver_key(TABLE)]
    assert request.run_key.startswith(f"resync-sweep:{RESYNC_ID}:")


def test_nothing_to_do_once_swept(settings, resources):
    _record(settings, swept=True)
    result = _evaluate(settings, resources)
    assert not result.run_requests and "no resync" in result.skip_reason.skip_message

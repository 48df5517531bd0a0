"""The reconciliation check's way back to equal: it names `binlake resync`, or with
silver.auto_resync starts the resync itself, never a second one while one is not over."""

from datetime import UTC, datetime

import pytest

from binlake.silver import reconcile_check
from binlake.silver.resync import BinlogPosition, ResyncLog, ResyncRequest
from tests.support.reconciliation import run_check

TABLE = "shop.orders"


def _request(resync_id: str, reason: str = "test") -> ResyncRequest:
    return ResyncRequest(
        id=resync_id,
        table=TABLE,
        reason=reason,
        requested_at=datetime(2026, 12, 7, 10, tzinfo=UTC).isoformat(),
        signal_position=BinlogPosition("mariadb-bin.000001", 4),
        topic="binlake.shop.orders",
        start_offsets={0: 0},
    )


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Resyncs the check asked for (the Kafka and MySQL side is not part of this unit)."""
    reasons: list[str] = []

    def request_resync(settings, table, *, reason):
        reasons.append(reason)
        return _request("20261207T100000Z-00000042", reason)

    monkeypatch.setattr(reconcile_check, "request_resync", request_resync)
    return reasons


def test_a_persisting_difference_names_the_command_that_heals_it(bronze, resources, started):
    evaluation = run_check(bronze, resources, source_rows=5)
    assert not evaluation.passed
    assert f"`binlake resync --table {TABLE}`" in evaluation.description
    assert started == []  # silver.auto_resync is off by default


def test_with_auto_resync_the_check_starts_the_resync(bronze, resources, started):
    bronze.settings.silver.auto_resync = True
    evaluation = run_check(bronze, resources, source_rows=5)
    assert not evaluation.passed
    assert "resync 20261207T100000Z-00000042 started" in evaluation.description
    assert len(started) == 1 and "counts differ by 3" in started[0]


def test_no_second_resync_while_one_is_in_progress(bronze, resources, started):
    bronze.settings.silver.auto_resync = True
    ResyncLog.of(bronze.settings).record_request(_request("20261207T090000Z-00000001"))
    evaluation = run_check(bronze, resources, source_rows=5)
    assert (
        "resync 20261207T090000Z-00000001 is in progress (snapshotting)" in evaluation.description
    )
    assert started == []


def test_a_busy_source_starts_nothing(bronze, resources, started):
    bronze.settings.silver.auto_resync = True
    evaluation = run_check(bronze, resources, source_rows=5, commit_age_seconds=1)
    assert not evaluation.passed
    assert "resync" not in evaluation.description
    assert started == []

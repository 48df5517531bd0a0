"""`binlake resync`'s refusals, on a real lake in tmp_path (settings from the env); the resync
itself runs against the real stack in tests/integration/test_resync.py."""

from datetime import UTC, datetime

from typer.testing import CliRunner

from binlake.cli import app
from binlake.silver.resync import BinlogPosition, ResyncLog, ResyncRequest

runner = CliRunner()


def test_resync_refuses_an_unknown_table(settings):
    result = runner.invoke(app, ["resync", "--table", "shop.nope"])
    assert result.exit_code == 2 and "unknown table 'shop.nope'" in result.output


def _pending_request(resync_id: str) -> ResyncRequest:
    """A resync of shop.orders asked for earlier and not over."""
    return ResyncRequest(
        id=resync_id,
        table="shop.orders",
        reason="earlier",
        requested_at=datetime(2026, 12, 7, 10, tzinfo=UTC).isoformat(),
        signal_position=BinlogPosition("mariadb-bin.000001", 4),
        topic="binlake.shop.orders",
        start_offsets={0: 0},
    )


def test_resync_refuses_while_one_of_the_table_is_not_over(settings):
    ResyncLog.of(settings).record_request(_pending_request("20261207T100000Z-00000001"))
    result = runner.invoke(app, ["resync", "--table", "shop.orders", "--no-wait"])
    assert result.exit_code == 1
    assert "20261207T100000Z-00000001" in result.output and "in progress" in result.output


def test_abandon_frees_the_table_for_a_new_resync(settings):
    """A resync Debezium never acted on would block the table's next one for good."""
    log = ResyncLog.of(settings)
    log.record_request(_pending_request("20261207T100000Z-00000002"))
    result = runner.invoke(app, ["resync", "--table", "shop.orders", "--abandon"])
    assert result.exit_code == 0, result.output
    assert "20261207T100000Z-00000002" in result.output and "abandoned" in result.output
    state = log.state("shop.orders", "20261207T100000Z-00000002")
    assert state.completion is not None and state.completion.status == "ABANDONED"
    assert log.pending("shop.orders") == []
    again = runner.invoke(app, ["resync", "--table", "shop.orders", "--abandon"])
    assert again.exit_code == 0 and "no resync of shop.orders is in progress" in again.output

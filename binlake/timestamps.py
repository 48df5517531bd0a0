"""Times given on the command line or in job config, as epoch milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_time_ms(text: str) -> int | None:
    """An ISO 8601 time as epoch milliseconds, UTC when it names no zone; None if it is not one."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)

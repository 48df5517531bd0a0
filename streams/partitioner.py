"""Which hourly bronze partition a change belongs to.

The hour comes from the record itself, never from the wall clock, so replaying a topic puts
every change in the same hour as the first run did:

* a change (c, u, d, r) goes to the hour of its source commit, `source.ts_ms`;
* a tombstone has no `source`; it goes to the hour of its Kafka record timestamp (Debezium sends
  it right after the delete it belongs to, and the timestamp is fixed once the record exists).
"""

from __future__ import annotations

from typing import Protocol

from binlake.bronze_layout import HourBucket
from binlake.errors import DecodeError


class _Source(Protocol):
    ts_ms: int


class _Event(Protocol):
    op: str
    source: _Source | None


def event_time_ms(event: _Event, record_timestamp_ms: int | None) -> int:
    """Epoch milliseconds that decide the event's hour bucket.

    Raises DecodeError if the event carries no usable time (a tombstone without a Kafka
    timestamp), which makes the record a dead letter rather than a guess.
    """
    if event.source is not None:
        return event.source.ts_ms
    if record_timestamp_ms is None or record_timestamp_ms < 0:
        raise DecodeError(
            f"op {event.op!r} record has no source.ts_ms and no Kafka timestamp to bucket it by"
        )
    return record_timestamp_ms


def hour_bucket(event: _Event, record_timestamp_ms: int | None = None) -> HourBucket:
    """The UTC hour bucket of `event` (see module docstring)."""
    return HourBucket.of_millis(event_time_ms(event, record_timestamp_ms))

"""Which hourly bronze partition a change belongs to.

The hour comes from the record itself, never from the wall clock, so replaying a topic puts
every change in the same hour as the first run did:

* a change (c, u, d, r, and a TRUNCATE t) goes to the hour of its source commit, `source.ts_ms`;
* a tombstone has no `source`. Debezium sends it right after the delete of the same key, and it
  goes to that delete's hour when the writer saw the delete (the usual case); otherwise, e.g.
  when a restart resumes exactly at the tombstone, to the hour of its Kafka record timestamp.
  Without the first rule a delete and its tombstone would land in different hours whenever
  Debezium lags its source across an hour boundary (catch-up, backfill), and every delete would
  then cost two tiny files.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from binlake.errors import DecodeError
from cdc.envelope import TOMBSTONE, TRUNCATE

__all__ = ["TOMBSTONE", "TRUNCATE", "PreviousDelete", "event_time_ms", "key_of"]


class _Source(Protocol):
    ts_ms: int


class _Event(Protocol):
    op: str
    row: dict[str, Any]
    primary_key: tuple[str, ...]
    source: _Source | None


class PreviousDelete(NamedTuple):
    """The last row a writer buffered, when it was a delete: its key and its time."""

    key: tuple[Any, ...]
    time_ms: int


def key_of(event: _Event) -> tuple[Any, ...]:
    return tuple(event.row.get(name) for name in event.primary_key)


def event_time_ms(
    event: _Event,
    record_timestamp_ms: int | None,
    previous_delete: PreviousDelete | None = None,
) -> int:
    """Epoch milliseconds that decide the event's hour bucket (see the module docstring).

    Raises DecodeError if the event carries no usable time (a tombstone without a preceding
    delete and without a Kafka timestamp), which makes the record a dead letter, not a guess.
    """
    if event.source is not None:
        return event.source.ts_ms
    if event.op == TOMBSTONE and not event.primary_key:
        # Neither key nor value: legitimate only right after a delete in a keyless table.
        if previous_delete is not None and previous_delete.key == ():
            return previous_delete.time_ms
        raise DecodeError(
            "record has neither key nor value and does not follow a delete of a row without "
            "a primary key"
        )
    if (
        event.op == TOMBSTONE
        and previous_delete is not None
        and event.primary_key
        and previous_delete.key == key_of(event)
    ):
        return previous_delete.time_ms
    if record_timestamp_ms is None or record_timestamp_ms < 0:
        raise DecodeError(
            f"op {event.op!r} record has no source.ts_ms and no Kafka timestamp to bucket it by"
        )
    return record_timestamp_ms

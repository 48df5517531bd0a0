"""The hour bucket of a change, in particular of tombstones, which carry no source time."""

from types import SimpleNamespace

import pytest

from binlake.bronze.partitioner import PreviousDelete, event_time_ms
from binlake.errors import DecodeError


def tombstone(**key):
    return SimpleNamespace(op="x", row=key, primary_key=tuple(key), source=None)


def test_a_keyless_tombstone_takes_the_time_of_the_keyless_delete_before_it():
    assert event_time_ms(tombstone(), 99, PreviousDelete((), 1_000)) == 1_000


@pytest.mark.parametrize("previous", [None, PreviousDelete((7,), 1_000)])
def test_a_keyless_tombstone_elsewhere_is_refused(previous):
    with pytest.raises(DecodeError, match="neither key nor value"):
        event_time_ms(tombstone(), 99, previous)


def test_a_keyed_tombstone_takes_its_delete_time_or_the_kafka_timestamp():
    assert event_time_ms(tombstone(id=7), 99, PreviousDelete((7,), 1_000)) == 1_000
    assert event_time_ms(tombstone(id=8), 99, PreviousDelete((7,), 1_000)) == 99

"""Where the lake's data starts: the hour of its first bronze file, kept in a create-once marker.

Dagster's hourly partitions start there (unless ``dagster.partitions_start`` says otherwise), so
the UI lists the hours the lake can hold rather than thousands of "missing" ones before it.

    bronze/_lake_start.json     {"first_hour": "2026-12-07-10:00"}   (a Dagster partition key)

The first manifest commit of a lake creates it (``record_lake_start``); create-once, so a second
writer racing it changes nothing. A lake from before the marker gets it at its next commit; until
then ``lake_start_hour`` falls back to the earliest hour the manifest lists.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from binlake.errors import FinalError
from binlake.object_log import ObjectLog, object_log
from binlake.storage import LakeStorage

if TYPE_CHECKING:  # the manifest records the start: imported there, not here
    from binlake.bronze.manifest import ManifestEntry

LAKE_START_PATH = "bronze/_lake_start.json"
HOUR_FORMAT = "%Y-%m-%d-%H:00"  # the Dagster hourly partition key


def first_hour(entries: Iterable[ManifestEntry]) -> str | None:
    """The earliest partition key among the files `entries` list (None: no file)."""
    return min((e.partition_key for e in entries if e.is_file), default=None)


def record_lake_start(objects: ObjectLog, entries: Iterable[ManifestEntry]) -> bool:
    """Create the marker with the earliest hour of `entries` (the manifest's files) unless it
    exists; True if this call created it."""
    hour = first_hour(entries)
    if hour is None:
        return False
    return objects.create(LAKE_START_PATH, json.dumps({"first_hour": hour}).encode())


def lake_start_hour(
    storage: LakeStorage, listed: Callable[[], Iterable[ManifestEntry]]
) -> str | None:
    """The partition key of the lake's first hour: the marker's, else (a lake from before the
    marker) the earliest of the entries `listed` gives (the manifest's, read only then); None
    for a lake without bronze files."""
    raw = object_log(storage).read(LAKE_START_PATH)
    if raw is None:
        return first_hour(listed())
    try:
        hour = json.loads(raw)["first_hour"]
        datetime.strptime(hour, HOUR_FORMAT)
    except (ValueError, KeyError, TypeError) as exc:
        raise FinalError(
            f"{storage.uri(LAKE_START_PATH)} is not {{'first_hour': 'YYYY-MM-DD-HH:00'}}: "
            f"{raw[:200]!r}; remove it (the next bronze commit writes it again)"
        ) from exc
    return hour

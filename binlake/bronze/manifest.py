"""The bronze manifest: an append-only log of every bronze file, the source of truth of bronze.

A file exists for readers once its entry is in the manifest, and not before. Each line is one
JSON `ManifestEntry`. Readers keep a byte offset as their cursor and read only what was appended
since, so a sensor's cost does not grow with the number of files already seen.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

from binlake import failpoints
from binlake.bronze.layout import MANIFEST_PATH
from binlake.storage import LakeStorage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManifestEntry:
    """One bronze file: what it holds and where; or, with no path, files dropped from bronze.

    An entry without a file is a retention line (``compactor.expiry``): like a compacted file's
    entry it supersedes the files it names, so readers drop them at once, but nothing replaces
    them.
    """

    table: str  # <db>.<table>
    topic: str
    partition: int
    first_offset: int
    last_offset: int
    rows: int
    path: str  # relative to the lake root
    partition_key: str  # Dagster hourly partition key, YYYY-MM-DD-HH:00
    bytes: int
    written_at: float  # epoch seconds when the file became durable
    rotation_reason: str
    primary_key: list[str] = field(default_factory=list)
    min_source_ts_ms: int | None = None
    max_source_ts_ms: int | None = None
    # Which shape of the table's rows the file holds: a fingerprint of its Arrow schema and the
    # table's schema version (bumped on every accepted or breaking change; 0 = not tracked).
    schema_fingerprint: str = ""
    schema_version: int = 0
    # A compacted file: the offset runs it holds when they are not first..last in one piece
    # (offsets of the partition that fell in other hours are not in it), and the files it
    # replaces. Readers drop the replaced files from the moment this entry is appended.
    offset_ranges: list[list[int]] = field(default_factory=list)
    supersedes: list[str] = field(default_factory=list)
    # Offsets accounted_from..first_offset-1 hold nothing a read_committed reader receives:
    # transaction markers and aborted records of Kafka Connect's exactly-once producer. The
    # writer got `first_offset` right after handling accounted_from - 1, so the file accounts
    # for them (None: the file starts where its rows start).
    accounted_from: int | None = None

    @property
    def is_file(self) -> bool:
        """False for a retention line, which names no file and holds no rows."""
        return bool(self.path)

    def ranges(self) -> list[tuple[int, int]]:
        """The inclusive offset runs the file accounts for: its rows' offsets and the offsets
        between them (and before them, from `accounted_from`) that hold no record."""
        if self.offset_ranges:
            return [(first, last) for first, last in self.offset_ranges]
        first = self.first_offset if self.accounted_from is None else self.accounted_from
        return [(first, self.last_offset)]

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> ManifestEntry:
        return cls(**json.loads(line))


def live_entries(entries: Iterable[ManifestEntry]) -> list[ManifestEntry]:
    """The files bronze holds, in manifest order: the last entry of each path (a file rewritten
    under its name), without the paths a later entry supersedes (compacted away or expired)."""
    by_path: dict[str, ManifestEntry] = {}
    for entry in entries:
        follow_entry(by_path, entry)
    return list(by_path.values())


def follow_entry(
    by_path: dict[str, ManifestEntry], entry: ManifestEntry, *, keep: bool = True
) -> None:
    """Apply the next manifest entry to `by_path` (the live files by path), as every reader
    does: drop the paths it supersedes and an earlier entry of its own path, then list it if it
    is a file (and `keep`: a reader may leave out files it has no use for)."""
    for replaced in entry.supersedes:
        by_path.pop(replaced, None)
    by_path.pop(entry.path, None)
    if entry.is_file and keep:
        by_path[entry.path] = entry


class Manifest:
    """Append to and read the manifest of one lake."""

    def __init__(self, storage: LakeStorage, path: str = MANIFEST_PATH):
        self.storage = storage
        self.path = path
        self._cursor = 0  # how far `exclusive()` has read
        self._last: dict[tuple[str, int], int] = {}

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[dict[tuple[str, int], int]]:
        """Hold the manifest's writer lock; yields the highest offset per (topic, partition).

        Bronze writers rename their file into place and append its entry only while holding
        it, so what it yields stays true until the block ends: a writer whose rows start at or
        below its partition's highest offset learns that another writer (the partition's new
        owner, or a worker that lost the partition without knowing yet) has put them in bronze.
        """
        with self.storage.exclusive_lock(self.path + ".lock"):
            entries, self._cursor = self.read_since(self._cursor)
            for entry in entries:
                key = (entry.topic, entry.partition)
                self._last[key] = max(self._last.get(key, -1), entry.last_offset)
            yield self._last

    def append(self, entry: ManifestEntry) -> None:
        """Durably record `entry`; once this returns, the file is part of bronze."""
        self.storage.append_line(self.path, entry.to_json())
        failpoints.failpoint(failpoints.AFTER_MANIFEST_APPEND)

    def read_since(
        self, cursor: int = 0, *, limit: int | None = None
    ) -> tuple[list[ManifestEntry], int]:
        """Entries appended after byte `cursor` (at most `limit`), and the cursor to pass next time.

        A line still being written (no trailing newline yet) is left for the next call. A complete
        line that is not a valid entry is a fragment of an append cut short by a crash: its file's
        offsets were never committed, so the worker rewrites the file and appends a new entry.
        Such a line is skipped with a warning; the lines after it are read.
        """
        data = self.storage.read_from(self.path, cursor)
        complete = data[: data.rfind(b"\n") + 1]
        entries: list[ManifestEntry] = []
        position = cursor
        for line in complete.split(b"\n")[:-1]:
            if limit is not None and len(entries) >= limit:
                return entries, position
            if line.strip():
                try:
                    entries.append(ManifestEntry.from_json(line.decode()))
                except (ValueError, TypeError) as exc:  # bad UTF-8 or JSON; not an entry
                    log.warning(
                        "skipping invalid manifest line at byte %d of %s (%d bytes, likely a "
                        "fragment of an interrupted append): %s",
                        position,
                        self.path,
                        len(line),
                        exc,
                    )
            position += len(line) + 1
        return entries, position

    def entries(self) -> list[ManifestEntry]:
        return self.read_since(0)[0]

    def entries_for(self, table: str) -> list[ManifestEntry]:
        """The live files of `table` (see `live_entries`)."""
        return live_entries(entry for entry in self.entries() if entry.table == table)

    def last_offsets(self) -> dict[tuple[str, int], int]:
        """Highest offset recorded per (topic, partition): where a writer resumes."""
        last: dict[tuple[str, int], int] = {}
        for entry in self.entries():
            key = (entry.topic, entry.partition)
            last[key] = max(last.get(key, -1), entry.last_offset)
        return last

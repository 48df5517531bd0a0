"""The bronze manifest: a log of every bronze file, the source of truth of bronze.

A file exists for readers once its entry is in the manifest, and not before. The log is a
directory of immutable commits, ``<dir>/log/<sequence number:020d>.json``, each holding one or
more `ManifestEntry` (a writer's runs, an expiry's lines) and the highest offset of each
topic-partition it touches. A commit is created only if its number is free (`binlake.object_log`),
so writers need no lock: each reads the log to its end, plans its entries from what it read,
and tries the next number; the loser of a race reads the winner's commit and plans again.

Every `CHECKPOINT_INTERVAL` commits the committing writer also writes a checkpoint (the live
files and high-water marks as of that commit) and a ``_last_checkpoint`` hint, so start-up and
`entries()` read the hint, one checkpoint and the commits after it, not the whole history.

Readers' cursor is the next sequence number to read. A lake whose manifest is the former single
file ``manifest.jsonl`` (L bytes of complete lines) is migrated by the first commit: its entries
become one commit numbered L-1, so the next commit is L and an old byte-offset cursor (at most L)
still means "what came after it" (inside the migrated commit, entries are found by their byte
positions). Until then readers see that file as that commit.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

from binlake import failpoints
from binlake.bronze.lake_start import record_lake_start
from binlake.bronze.layout import MANIFEST_PATH
from binlake.errors import StorageUnavailableError
from binlake.object_log import ObjectLog, object_log
from binlake.storage import LakeStorage

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL = 100  # commits between checkpoints
RETENTION_LINES_KEPT_SECONDS = 7 * 24 * 3600
SEQUENCE_DIGITS = 20

PartitionKey = tuple[str, int]  # (topic, partition)


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


@dataclass
class ManifestState:
    """The manifest as of commit `next_seq` - 1: the highest offset per topic-partition and the
    live files (`live_entries`). What a writer's plan decides from."""

    next_seq: int = 0
    high_water: dict[PartitionKey, int] = field(default_factory=dict)
    by_path: dict[str, ManifestEntry] = field(default_factory=dict)
    # Retention lines of the last `RETENTION_LINES_KEPT_SECONDS`: the compactor deletes the
    # files they expired once readers are done with them (`compactor.retention`), so a
    # checkpoint keeps them; files of older ones are unlisted, left to the orphan collector.
    retention_lines: list[ManifestEntry] = field(default_factory=list)

    def apply(self, commit: Commit) -> None:
        for entry in commit.entries:
            follow_entry(self.by_path, entry)
            if not entry.is_file:
                self.retention_lines.append(entry)
            key = (entry.topic, entry.partition)
            self.high_water[key] = max(self.high_water.get(key, -1), entry.last_offset)
        for key, offset in commit.high_water.items():
            self.high_water[key] = max(self.high_water.get(key, -1), offset)
        self.next_seq = max(self.next_seq, commit.seq + 1)

    def live(self) -> list[ManifestEntry]:
        return list(self.by_path.values())

    def copy(self) -> ManifestState:
        """A state that `apply` can change without changing this one (entries are frozen)."""
        return ManifestState(
            self.next_seq, dict(self.high_water), dict(self.by_path), list(self.retention_lines)
        )

    def entries(self) -> list[ManifestEntry]:
        """What a checkpoint lists: the recent retention lines, then the live files (in this
        order, so following them as a log gives this state back)."""
        return [*self.retention_lines, *self.by_path.values()]

    def to_json(self) -> bytes:
        recent = time.time() - RETENTION_LINES_KEPT_SECONDS
        self.retention_lines = [e for e in self.retention_lines if e.written_at >= recent]
        return _dumps(
            {
                "seq": self.next_seq - 1,
                "entries": [asdict(e) for e in self.entries()],
                "high_water": _high_water_json(self.high_water),
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> ManifestState:
        raw = json.loads(data)
        state = cls(next_seq=int(raw["seq"]) + 1, high_water=_high_water_of(raw["high_water"]))
        for item in raw["entries"]:
            entry = ManifestEntry(**item)
            if entry.is_file:
                state.by_path[entry.path] = entry
            else:
                state.retention_lines.append(entry)
        return state


@dataclass(frozen=True)
class Commit:
    """One object of the log: entries that became part of bronze together.

    `legacy_ends` is set only on the commit migrated from ``manifest.jsonl``: the byte where
    each entry's line ended there, so an old byte-offset cursor finds its place inside it.
    """

    seq: int
    entries: list[ManifestEntry]
    high_water: dict[PartitionKey, int]
    legacy_ends: list[int] | None = None

    def to_json(self) -> bytes:
        raw: dict = {
            "entries": [asdict(e) for e in self.entries],
            "high_water": _high_water_json(self.high_water),
        }
        if self.legacy_ends is not None:
            raw["legacy_ends"] = self.legacy_ends
        return _dumps(raw)

    @classmethod
    def from_json(cls, seq: int, data: bytes) -> Commit:
        raw = json.loads(data)
        return cls(
            seq=seq,
            entries=[ManifestEntry(**item) for item in raw["entries"]],
            high_water=_high_water_of(raw["high_water"]),
            legacy_ends=raw.get("legacy_ends"),
        )

    @classmethod
    def of(cls, seq: int, entries: list[ManifestEntry], state: ManifestState) -> Commit:
        """The commit listing `entries` after `state`, with the high-water marks it moves to."""
        high_water: dict[PartitionKey, int] = {}
        for entry in entries:
            key = (entry.topic, entry.partition)
            high_water[key] = max(
                high_water.get(key, state.high_water.get(key, -1)), entry.last_offset
            )
        return cls(seq, entries, high_water)


Plan = Callable[[ManifestState], list[ManifestEntry]]


class Manifest:
    """Commit to and read the manifest of one lake.

    `path` names the manifest: the default ``bronze/_manifest/manifest.jsonl`` keeps its log in
    ``bronze/_manifest/`` (the path itself is the legacy single-file manifest); any other
    ``<dir>/<name>.jsonl`` keeps it in ``<dir>/<name>/``.
    """

    def __init__(self, storage: LakeStorage, path: str = MANIFEST_PATH):
        self.storage = storage
        self.path = path
        directory, name = os.path.split(path)
        stem = name.removesuffix(".jsonl")
        root = directory if stem == "manifest" else os.path.join(directory, stem)
        self.log_dir = os.path.join(root, "log")
        self.checkpoint_dir = os.path.join(root, "checkpoints")
        self.hint_path = os.path.join(root, "_last_checkpoint")
        self.checkpoint_interval = CHECKPOINT_INTERVAL
        self._objects: ObjectLog | None = None
        self._lock = threading.Lock()  # one committer at a time per instance (shared by writers)
        self._state: ManifestState | None = None
        self._migration: Commit | None = None  # the legacy file as a commit, not created yet
        self._start_recorded = False  # bronze/_lake_start.json known to exist
        self._known_start: int | None = None  # a sequence number at or after the first commit
        # The newest checkpoint read, by name: checkpoints are immutable, and a starting worker
        # asks for it once per table (parsing 100k entries takes seconds).
        self._parsed_checkpoint: tuple[str, ManifestState] | None = None

    @property
    def objects(self) -> ObjectLog:
        if self._objects is None:
            self._objects = object_log(self.storage)
        return self._objects

    # -- writing ------------------------------------------------------------------------------

    def commit(self, plan: Plan) -> list[ManifestEntry]:
        """List the entries `plan` returns in one new commit; returns them ([] lists nothing).

        `plan` gets the manifest as of its last commit and must decide from it alone: if
        another writer commits first, the log is read again and `plan` is called again with the
        winner's commit applied (so it must not mutate the state, and may run more than once).
        Once this returns, the entries are part of bronze. An exception from `plan` propagates
        and nothing is committed.
        """
        with self._lock:
            state = self._catch_up()
            while True:
                entries = plan(state)
                if not entries:
                    return []
                if self._migration is not None:
                    self._publish(self._migration.seq, self._migration.to_json())
                    self._migration = None
                commit = Commit.of(state.next_seq, entries, state)
                if self._publish(commit.seq, commit.to_json()):
                    state.apply(commit)
                    self._saw_commit(commit.seq)
                    self._record_lake_start(state)
                    if (commit.seq + 1) % self.checkpoint_interval == 0:
                        self._write_checkpoint(state)
                    failpoints.failpoint(failpoints.AFTER_MANIFEST_APPEND)
                    return entries
                log.debug("manifest commit %d taken by another writer; planning again", commit.seq)
                state = self._catch_up()

    def _record_lake_start(self, state: ManifestState) -> None:
        """Once per instance: the lake's first hour (`binlake.bronze.lake_start`), created if
        missing. Best effort: the commit stands; a failure is retried at the next commit."""
        if self._start_recorded:
            return
        try:
            record_lake_start(self.objects, state.live())
            self._start_recorded = True
        except Exception:  # the entries are committed whatever happens here
            log.warning(
                "could not record the lake's first hour; retried next commit", exc_info=True
            )

    def append(self, entry: ManifestEntry) -> None:
        """Durably record `entry` in a commit of its own, whatever else was listed meanwhile."""
        self.commit(lambda _state: [entry])

    def _publish(self, seq: int, data: bytes) -> bool:
        """Create commit `seq`; False if it exists already."""
        return self.objects.create(self._commit_name(seq), data)

    def _catch_up(self) -> ManifestState:
        """This instance's state, brought up to the end of the log."""
        if self._state is None:
            self._state = self._checkpoint() or ManifestState()
        for commit in self._commits_from(self._state.next_seq):
            self._state.apply(commit)
            if commit.legacy_ends is not None and self._state.next_seq == commit.seq + 1:
                self._migration = commit if self._is_virtual(commit) else None
        return self._state

    def _write_checkpoint(self, state: ManifestState) -> None:
        """Write the checkpoint of `state` and point the hint at it. Derived data: if it
        cannot be written, readers read more commits, and the commit stands."""
        seq = state.next_seq - 1
        name = os.path.join(self.checkpoint_dir, _checkpoint_name(seq))
        try:
            self.objects.put(name, state.to_json())
            # The marks in the hint too: where writers resume, without parsing the checkpoint.
            hint = {"seq": seq, "high_water": _high_water_json(state.high_water)}
            self.objects.put(self.hint_path, _dumps(hint))
        except StorageUnavailableError as exc:
            log.warning(
                "could not write manifest checkpoint %s (commit %d stands): %s", name, seq, exc
            )

    # -- reading ------------------------------------------------------------------------------

    def read_since(
        self, cursor: int = 0, *, limit: int | None = None
    ) -> tuple[list[ManifestEntry], int]:
        """Entries committed from sequence number `cursor` on, and the cursor to pass next time.

        At most `limit` entries, except that a commit is never split (its first entries count
        as a whole): the one commit that is larger is returned whole. The migrated legacy commit
        is split at any entry (its cursor positions are byte offsets). From cursor 0 without a
        limit the read starts at the last checkpoint, whose entries are the live files then.
        """
        entries: list[ManifestEntry] = []
        position = cursor
        commits: Iterable[Commit]
        if cursor == 0 and limit is None and (checkpoint := self._checkpoint()) is not None:
            entries.extend(checkpoint.entries())
            position = checkpoint.next_seq
        commits = self._commits_from(position)
        for commit in commits:
            if commit.legacy_ends is not None:
                for entry, end in zip(commit.entries, commit.legacy_ends, strict=True):
                    if end <= position:
                        continue
                    if limit is not None and len(entries) >= limit:
                        return entries, position
                    entries.append(entry)
                    position = end
                position = commit.seq + 1
                continue
            if limit is not None and len(entries) >= limit:
                return entries, position
            entries.extend(commit.entries)
            position = commit.seq + 1
        return entries, position

    def end(self) -> int:
        """The cursor after the last commit: 0 for an empty manifest. One listing of the
        commits after the newest checkpoint; no commit or checkpoint is read."""
        names = self._checkpoint_names()
        if names and self.storage.is_local:
            # Commits after a checkpoint have no gaps: look them up by number (a listing reads
            # the whole directory, every commit ever made).
            seq = int(names[-1].split(".")[0])
            while self.objects.read(self._commit_name(seq + 1)) is not None:
                seq += 1
            return seq + 1
        after = _before(names[-1]) if names else ""
        commits = self.objects.names_after(self.log_dir, after)
        if commits:
            return int(commits[-1].split(".")[0]) + 1
        legacy = self._legacy_commit()  # no commit yet
        return 0 if legacy is None else legacy.seq + 1

    def entries(self) -> list[ManifestEntry]:
        """The last checkpoint's entries (its recent retention lines and live files), then
        every entry committed after it; every entry if there is no checkpoint yet."""
        return self.read_since(0)[0]

    def entries_for(self, table: str) -> list[ManifestEntry]:
        """The live files of `table` (see `live_entries`)."""
        return live_entries(entry for entry in self.entries() if entry.table == table)

    def last_offsets(self) -> dict[PartitionKey, int]:
        """Highest offset recorded per (topic, partition): where a writer resumes. The hint's
        marks plus the commits after its checkpoint; the checkpoint itself only if the hint is
        behind the newest one or carries no marks."""
        hint = self._hint()
        names = self._checkpoint_names(hint)
        if hint is not None and "high_water" in hint and names == [_checkpoint_name(hint["seq"])]:
            seq = int(hint["seq"])
            self._saw_commit(seq)
            state = ManifestState(next_seq=seq + 1, high_water=_high_water_of(hint["high_water"]))
        else:
            state = self._checkpoint() or ManifestState()
        for commit in self._commits_from(state.next_seq):
            state.apply(commit)
        return dict(state.high_water)

    # -- the log ------------------------------------------------------------------------------

    def _commit_name(self, seq: int) -> str:
        return os.path.join(self.log_dir, f"{seq:0{SEQUENCE_DIGITS}d}.json")

    def _checkpoint(self) -> ManifestState | None:
        """The newest checkpoint (see `_checkpoint_names`), a copy of its state to change."""
        for name in reversed(self._checkpoint_names()):
            if self._parsed_checkpoint is not None and self._parsed_checkpoint[0] == name:
                return self._parsed_checkpoint[1].copy()
            data = self.objects.read(os.path.join(self.checkpoint_dir, name))
            if data is not None:
                state = ManifestState.from_json(data)
                self._saw_commit(state.next_seq - 1)
                self._parsed_checkpoint = (name, state)
                return state.copy()
        return None

    def _hint(self) -> dict | None:
        """The `_last_checkpoint` hint: the checkpoint's `seq` and its `high_water` marks."""
        hint = self.objects.read(self.hint_path)
        if hint is None:
            return None
        try:
            raw = json.loads(hint)
            int(raw["seq"])
            return raw
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable manifest checkpoint hint %s: %s", self.hint_path, exc)
            return None

    def _checkpoint_names(self, hint: dict | None = None) -> list[str]:
        """The hint's checkpoint and any newer one (the hint may be stale or missing), oldest
        first."""
        hint = self._hint() if hint is None else hint
        after = "" if hint is None else _checkpoint_name(int(hint["seq"]))
        return self.objects.names_after(self.checkpoint_dir, _before(after))

    def _commits_from(self, seq: int) -> Iterator[Commit]:
        """The commits numbered `seq` and after, in order, as they are now."""
        while True:
            data = self.objects.read(self._commit_name(seq))
            if data is not None:
                commit = Commit.from_json(seq, data)
                self._saw_commit(seq)
                yield commit
                seq += 1
                continue
            if self._known_start is not None and seq > self._known_start:
                return  # commits are numbered without gaps after the first: the end
            if seq > 0 and self.objects.read(self._commit_name(seq - 1)) is not None:
                self._saw_commit(seq - 1)
                return  # the commit before exists, so none comes after a gap
            later = self.objects.names_after(self.log_dir, os.path.basename(self._commit_name(seq)))
            if later:
                seq = int(later[0].split(".")[0])
                continue
            if self.objects.names_after(self.log_dir):
                return  # every commit is before `seq`
            legacy = self._legacy_commit()  # no commit yet: the legacy file is the log
            if legacy is not None and legacy.seq >= seq:
                yield legacy
            return

    def _saw_commit(self, seq: int) -> None:
        """Note that commit `seq` exists: from it on, a missing number is the end of the log."""
        if self._known_start is None or seq < self._known_start:
            self._known_start = seq

    def _legacy_commit(self) -> Commit | None:
        """The single-file manifest as the commit it migrates to (None if there is none)."""
        data = self.storage.read_from(self.path, 0)
        complete = data[: data.rfind(b"\n") + 1]
        if not complete:
            return None
        entries: list[ManifestEntry] = []
        ends: list[int] = []
        position = 0
        for line in complete.split(b"\n")[:-1]:
            position += len(line) + 1
            if not line.strip():
                continue
            try:
                entries.append(ManifestEntry.from_json(line.decode()))
            except (ValueError, TypeError) as exc:  # bad UTF-8 or JSON; not an entry
                log.warning(
                    "skipping invalid line ending at byte %d of the legacy manifest %s (%d "
                    "bytes, likely a fragment of an interrupted append): %s",
                    position,
                    self.path,
                    len(line),
                    exc,
                )
                continue
            ends.append(position)
        commit = Commit.of(len(complete) - 1, entries, ManifestState())
        return Commit(commit.seq, entries, commit.high_water, legacy_ends=ends)

    def _is_virtual(self, commit: Commit) -> bool:
        return self.objects.read(self._commit_name(commit.seq)) is None


def _checkpoint_name(seq: int) -> str:
    return f"{seq:0{SEQUENCE_DIGITS}d}.json"


def _before(name: str) -> str:
    """A name sorting just before `name` ('' for ''), so a listing after it includes it."""
    return name[:-1] if name else ""


def _dumps(raw: object) -> bytes:
    return json.dumps(raw, separators=(",", ":"), sort_keys=True).encode()


def _high_water_json(high_water: dict[PartitionKey, int]) -> list[list]:
    return [[topic, partition, offset] for (topic, partition), offset in sorted(high_water.items())]


def _high_water_of(raw: list[list]) -> dict[PartitionKey, int]:
    return {(str(topic), int(partition)): int(offset) for topic, partition, offset in raw}

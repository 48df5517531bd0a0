"""What bronze lists already for one topic-partition, as a writer given those offsets again sees it.

Offsets at or below a partition writer's `resume_after` (the manifest's last offset for the
partition) may be in bronze already, whatever the committed consumer offset said (a crash before
the commit, a replay after a consumer group reset). `ListedFiles` looks them up among the
partition's listed files (`binlake.bronze.coverage`): an offset an intact file holds is not
written again. An offset no intact file holds (its file was deleted or lost, or never written)
is; while it belongs to a lost file's range, the writer ends its new file where the lost one
did, so the new file has the lost file's name and bounds, and if it comes out identical to the
lost file's entry (same offsets, rows, bytes, schema) `record()` asks for no second manifest
entry: the file is restored in place.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from binlake.bronze.coverage import PartitionFiles, is_intact
from binlake.bronze.manifest import Manifest, ManifestEntry
from binlake.errors import StorageUnavailableError
from binlake.storage import LakeStorage

log = logging.getLogger(__name__)

Row = TypeVar("Row")


@dataclass
class ListedFiles:
    """The listed bronze files of one topic-partition, loaded from the first offset asked about."""

    topic: str
    partition: int
    storage: LakeStorage
    manifest: Manifest
    _files: PartitionFiles | None = field(default=None, init=False)
    # (path, bytes) -> is_intact, cached
    _intact: dict[tuple[str, int], bool] = field(default_factory=dict, init=False)

    def file_at(self, offset: int) -> tuple[ManifestEntry | None, bool]:
        """The listed file whose range holds `offset`, and whether it is intact.

        Raises StorageUnavailableError if the manifest or the lake cannot be read.
        """
        try:
            if self._files is None or offset < self._files.from_offset:
                self._files = PartitionFiles.load(
                    self.manifest, self.topic, self.partition, from_offset=offset
                )
            entry = self._files.file_at(offset)
            if entry is None:
                return None, False
            key = (entry.path, entry.bytes)
            intact = self._intact.get(key)
            if intact is None:
                intact = self._intact[key] = is_intact(self.storage, entry)
                if not intact:
                    log.warning(
                        "%s[%d]: bronze file %s (offsets %d..%d) is listed in the manifest but "
                        "missing or not the size it had; its offsets are written again",
                        self.topic,
                        self.partition,
                        entry.path,
                        entry.first_offset,
                        entry.last_offset,
                    )
        except OSError as exc:
            raise StorageUnavailableError(
                f"cannot tell whether bronze holds {self.topic}[{self.partition}]@{offset}: {exc}"
            ) from exc
        return entry, intact

    def runs_not_in_bronze(self, rows: Sequence[tuple[int, Row]]) -> list[list[tuple[int, Row]]]:
        """The `(offset, row)` pairs no intact listed file holds, split where such a file lies
        between.

        Files are checked afresh (not from the cache), from the manifest read to its end: the
        caller is planning a commit, which fails (and is planned again) if anything was
        committed after what this read. Raises OSError.
        """
        first, last = rows[0][0], rows[-1][0]
        if self._files is None or first < self._files.from_offset:
            self._files = PartitionFiles(self.topic, self.partition, from_offset=first)
        self._files.catch_up(self.manifest)
        intact = [
            entry
            for entry in self._files.files_between(first, last)
            if is_intact(self.storage, entry)
        ]
        held = [run for entry in intact for run in entry.ranges()]
        runs: list[list[tuple[int, Row]]] = []
        run: list[tuple[int, Row]] = []
        for row in rows:
            offset = row[0]
            if any(a <= offset <= b for a, b in held):
                if run:
                    runs.append(run)
                    run = []
                continue
            if run and any(run[-1][0] < a and b < offset for a, b in held):
                runs.append(run)
                run = []
            run.append(row)
        if run:
            runs.append(run)
        return runs

    def record(
        self,
        entry: ManifestEntry,
        rewriting: ManifestEntry | None,
        planned: Sequence[ManifestEntry] = (),
    ) -> tuple[ManifestEntry, bool]:
        """The entry that lists a file just written, and whether it is new (to be committed).

        `rewriting` is the lost file whose offsets the file writes again, if any; `planned` the
        new entries of the same commit so far. A file that restores a lost one exactly (same
        name, offsets, rows, bytes and schema as the path's listed entry) is not listed again:
        readers already count it once.
        """
        path = entry.path
        listed = self._files.by_path.get(path) if self._files is not None else None
        superseded = {p for e in planned for p in e.supersedes}
        if (
            rewriting is not None
            and rewriting.path != path
            and rewriting.path not in superseded
            and self._files is not None
            and self._files.by_path.get(rewriting.path) == rewriting
        ):
            # The lost file's offsets come back under another name (a compacted file's name
            # carries its last offset too; a record of it may now go to another hour or to the
            # dead letters; the name was taken): its entry must stop listing a file that is gone.
            entry = dataclasses.replace(entry, supersedes=[rewriting.path])
            log.info(
                "%s[%d]: lost bronze file %s (offsets %d..%d) is written again from %s on; the "
                "new entry supersedes it",
                self.topic,
                self.partition,
                rewriting.path,
                rewriting.first_offset,
                rewriting.last_offset,
                path,
            )
        if listed is not None and _same_file(listed, entry):
            log.info(
                "%s[%d]: restored lost bronze file %s (offsets %d..%d) as its manifest entry "
                "describes it",
                self.topic,
                self.partition,
                path,
                entry.first_offset,
                entry.last_offset,
            )
            return listed, False
        if listed is not None:
            log.info(
                "%s[%d]: rewrote lost bronze file %s as offsets %d..%d; its new entry supersedes "
                "the one for offsets %d..%d",
                self.topic,
                self.partition,
                path,
                entry.first_offset,
                entry.last_offset,
                listed.first_offset,
                listed.last_offset,
            )
        return entry, True


def _same_file(listed: ManifestEntry, written: ManifestEntry) -> bool:
    """Whether `written` describes the same file as `listed` (when and why aside)."""
    stamp = {"written_at": 0.0, "rotation_reason": ""}
    return dataclasses.replace(listed, **stamp) == dataclasses.replace(written, **stamp)

"""Offset continuity of bronze: every Kafka offset is accounted for, once.

Per topic-partition, the bronze files listed in the manifest hold the offset ranges
``[first_offset, last_offset]``; sorted, they must follow one another without a gap and without
an overlap, from the lowest offset bronze holds to the highest.

What is and is not a problem:

* A retried flush rewrites a file under the same name (the name carries its first offset), so a
  path listed twice is one file: the later entry describes it. Files a compacted file
  supersedes are left out, its entry covering their offsets, as the offset runs it lists (an
  hour's offsets interleave with other hours', so a compacted file's runs can have holes that
  other files fill).
* Records that are deliberately not written are real offsets outside any file. Dead letters are
  not in the manifest; each has a lake copy named after its position
  (``bronze/_dead_letter/<topic>+<partition>+<offset>.json``, see ``streams.dead_letter``), so
  the check lists that directory (one listing, names only, no file is read) and a gap is fine
  where every offset of it was dead-lettered. The copy is written before the record is acked,
  hence before any later file of the partition reaches the manifest, so reading the manifest
  first and the directory second sees every dead letter a gap could need. A dead letter
  *inside* a file's range (dead-lettered while that file was being buffered) is simply covered.
  Dead letters above the highest file offset are ignored: rows before them may still be
  buffered by the worker.
* Schema-change records are passed over without a trace, but Debezium writes them to the
  ``<prefix>`` topic, not to table topics. Kafka itself leaves holes in offsets only with
  transactions (commit markers, aborted records) or compaction. Kafka Connect's exactly-once
  producer writes transactions: the writer knows the offsets between the records it received
  held nothing, and a file's ``accounted_from`` says so (``ManifestEntry.ranges`` includes
  them). So any other gap fails the check, named by its offsets and the files around it.
* Offsets below the first file (topic retention, a lake started later, bronze files expired by
  ``compactor.bronze_retention_days``) are not a gap: only the span bronze holds is checked,
  and its first offset is reported. Expiry only ever takes a prefix of a partition's offsets.
* An overlap (two files holding the same offset) means rows stored twice; silver keeps one
  version per change, but the check still fails: bronze writers fence each other so that this
  never happens.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

import pyarrow.fs as pafs

from binlake.bronze.layout import DEAD_LETTER_DIR
from binlake.bronze.manifest import ManifestEntry, live_entries
from binlake.errors import RetriableError
from binlake.storage import LakeStorage

MAX_LISTED = 20  # gaps and overlaps listed in the metadata, per kind

TopicPartition = tuple[str, int]


@dataclass(frozen=True, order=True)
class OffsetRange:
    """Offsets ``first..last``, both included."""

    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}..{self.last}"


@dataclass(frozen=True)
class Gap:
    """Offsets of a partition that no file (and no dead letter) holds."""

    offsets: OffsetRange
    after: str  # the file whose range ends just before the gap
    before: str  # the file whose range starts just after it

    def __str__(self) -> str:
        return f"offsets {self.offsets} ({self.offsets.size}) missing between {self.after} and {self.before}"


@dataclass(frozen=True)
class Overlap:
    """Offsets held by two files."""

    offsets: OffsetRange
    first_path: str
    second_path: str

    def __str__(self) -> str:
        return (
            f"offsets {self.offsets} ({self.offsets.size}) in both {self.first_path} "
            f"and {self.second_path}"
        )


@dataclass(frozen=True)
class PartitionContinuity:
    """How one topic-partition's bronze files cover its offsets."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    files: int
    gaps: tuple[Gap, ...] = ()
    overlaps: tuple[Overlap, ...] = ()
    dead_lettered: tuple[OffsetRange, ...] = ()  # between files, filled by dead letters
    invalid: tuple[str, ...] = ()  # entries whose first offset is above their last

    @property
    def name(self) -> str:
        return f"{self.topic}[{self.partition}]"

    @property
    def ok(self) -> bool:
        return not (self.gaps or self.overlaps or self.invalid)

    @property
    def missing_offsets(self) -> int:
        return sum(gap.offsets.size for gap in self.gaps)


def offset_continuity(
    entries: Iterable[ManifestEntry],
    *,
    dead_letters: Mapping[TopicPartition, Collection[int]] | None = None,
) -> list[PartitionContinuity]:
    """Per topic-partition of `entries`, how their files cover the offsets (pure).

    `entries` are manifest entries in manifest order (one table's, or any set: they are grouped
    by topic-partition); files later entries supersede are ignored. `dead_letters` are the
    dead-lettered offsets per topic-partition, which fill gaps between files.
    """
    by_partition: dict[TopicPartition, list[ManifestEntry]] = {}
    for entry in live_entries(entries):
        by_partition.setdefault((entry.topic, entry.partition), []).append(entry)
    results = []
    for tp, files in sorted(by_partition.items()):
        letters = sorted(set((dead_letters or {}).get(tp, ())))
        results.append(_partition_continuity(tp, files, letters))
    return results


def _partition_continuity(
    tp: TopicPartition, files: list[ManifestEntry], letters: list[int]
) -> PartitionContinuity:
    invalid = tuple(
        f"{e.path}: first offset {e.first_offset} > last offset {e.last_offset}"
        for e in files
        if e.first_offset > e.last_offset
    )
    ranges = sorted(
        (first, last, e.path)
        for e in files
        if e.first_offset <= e.last_offset
        for first, last in e.ranges()
    )
    gaps: list[Gap] = []
    overlaps: list[Overlap] = []
    filled: list[OffsetRange] = []
    if not ranges:
        return PartitionContinuity(tp[0], tp[1], -1, -1, len(files), invalid=invalid)
    covered_through, covering_path = ranges[0][0] - 1, ""
    for first, last, path in ranges:
        if first > covered_through + 1:
            hole = OffsetRange(covered_through + 1, first - 1)
            missing, letters_in = _subtract(hole, letters)
            filled.extend(letters_in)
            gaps.extend(Gap(m, covering_path, path) for m in missing)
        elif first <= covered_through:
            overlaps.append(
                Overlap(OffsetRange(first, min(last, covered_through)), covering_path, path)
            )
        if last > covered_through:
            covered_through, covering_path = last, path
    return PartitionContinuity(
        topic=tp[0],
        partition=tp[1],
        first_offset=ranges[0][0],
        last_offset=covered_through,
        files=len(files),
        gaps=tuple(gaps),
        overlaps=tuple(overlaps),
        dead_lettered=tuple(filled),
        invalid=invalid,
    )


def _subtract(hole: OffsetRange, letters: list[int]) -> tuple[list[OffsetRange], list[OffsetRange]]:
    """`hole` split into what no dead letter explains and the dead-lettered runs (sorted input)."""
    missing: list[OffsetRange] = []
    lettered: list[OffsetRange] = []
    cursor = hole.first
    for offset in letters:
        if offset < hole.first:
            continue
        if offset > hole.last:
            break
        if offset > cursor:
            missing.append(OffsetRange(cursor, offset - 1))
        if lettered and lettered[-1].last == offset - 1:
            lettered[-1] = OffsetRange(lettered[-1].first, offset)
        else:
            lettered.append(OffsetRange(offset, offset))
        cursor = offset + 1
    if cursor <= hole.last:
        missing.append(OffsetRange(cursor, hole.last))
    return missing, lettered


def dead_letter_offsets(
    storage: LakeStorage, topics: Collection[str]
) -> dict[TopicPartition, set[int]]:
    """Dead-lettered offsets of `topics` per partition, from the names in the dead-letter area.

    One directory listing; the files themselves are not read. Names that are not
    ``<topic>+<partition>+<offset>.json`` (temporary files of an atomic write) are ignored.
    """
    selector = pafs.FileSelector(storage.full_path(DEAD_LETTER_DIR), allow_not_found=True)
    try:
        infos = storage.filesystem.get_file_info(selector)
    except OSError as exc:
        raise RetriableError(f"cannot list the dead-letter area {DEAD_LETTER_DIR}: {exc}") from exc
    found: dict[TopicPartition, set[int]] = {}
    for info in infos:
        name = info.base_name
        if info.type != pafs.FileType.File or name.startswith(".") or not name.endswith(".json"):
            continue
        parts = name[: -len(".json")].rsplit("+", 2)
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            continue
        topic = unquote(parts[0])
        if topic in topics:
            found.setdefault((topic, int(parts[1])), set()).add(int(parts[2]))
    return found


@dataclass
class BoundedListing:
    """Lines to show, at most `MAX_LISTED` of them, and how many there were in all."""

    lines: list[str] = field(default_factory=list)
    total: int = 0

    def add(self, line: str) -> None:
        self.total += 1
        if len(self.lines) < MAX_LISTED:
            self.lines.append(line)

    def markdown(self) -> str:
        if not self.total:
            return "none"
        more = self.total - len(self.lines)
        return "\n".join(
            [f"- {line}" for line in self.lines] + ([f"- ... and {more} more"] if more else [])
        )

"""Compact one group: read its files, write one sorted file, prove it holds the same rows, swap.

The swap is one manifest line: the compacted file's entry lists the files it supersedes, and every
reader drops those from the moment it reads that line (``binlake.bronze.manifest.live_entries``). So
a reader sees the small files or the compacted one, never both and never neither; the small files
stay on disk until ``retention`` deletes them, for readers that listed them just before.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from binlake.bronze.layout import (
    COMPACTION_ROTATION_REASON,
    OFFSET,
    SOURCE_TS_MS,
    compacted_file_path,
)
from binlake.bronze.manifest import Manifest, ManifestEntry, ManifestState, live_entries
from binlake.bronze.parquet_format import to_parquet_bytes
from binlake.errors import FinalError, RetriableError
from binlake.storage import LakeStorage
from compactor.digest import row_digest
from compactor.plan import CompactionGroup


class CompactionMismatchError(FinalError):
    """The compacted file does not hold exactly the rows of the files it would replace."""


class CompactionConflictError(RetriableError):
    """Another compaction replaced one of the group's files first; plan again."""


@dataclass(frozen=True)
class Compacted:
    entry: ManifestEntry
    input_files: int
    input_bytes: int
    seconds: float


def offset_runs(files: Iterable[ManifestEntry]) -> list[list[int]]:
    """The offsets `files` hold as sorted runs, adjacent or overlapping runs merged."""
    runs: list[list[int]] = []
    for first, last in sorted(r for f in files for r in f.ranges()):
        if runs and first <= runs[-1][1] + 1:
            runs[-1][1] = max(runs[-1][1], last)
        else:
            runs.append([first, last])
    return runs


def _sorted_rows(table: pa.Table, primary_key: list[str]) -> pa.Table:
    """By primary key, then offset: a reader looking for a key reads few row groups."""
    keys = [c for c in primary_key if c in table.column_names] + [OFFSET]
    return table.take(pc.sort_indices(table, sort_keys=[(k, "ascending") for k in keys]))


def compact_group(storage: LakeStorage, manifest: Manifest, group: CompactionGroup) -> Compacted:
    started = time.monotonic()
    inputs = []
    for file in group.files:
        try:
            inputs.append(
                pq.read_table(storage.full_path(file.path), filesystem=storage.filesystem)
            )
        except FileNotFoundError:
            raise FinalError(
                f"compacting {group}: {file.path} is listed in the manifest but missing "
                "(replay the table to write it again)"
            ) from None
    source = pa.concat_tables(inputs)
    primary_key = list(group.files[-1].primary_key)
    compacted = _sorted_rows(source, primary_key)
    runs = offset_runs(group.files)
    first, last = runs[0][0], runs[-1][1]
    path = compacted_file_path(
        group.table, group.partition_key, group.topic, group.partition, first, last
    )
    data = to_parquet_bytes(compacted)
    storage.write_atomic(path, data)
    written = pq.read_table(storage.full_path(path), filesystem=storage.filesystem)
    before, after = row_digest(source), row_digest(written)
    if before != after:
        storage.filesystem.delete_file(storage.full_path(path))
        raise CompactionMismatchError(
            f"compacting {group}: {path} read back {after} but the files hold {before}; "
            "the swap was aborted and the files are unchanged"
        )
    timestamps = source.column(SOURCE_TS_MS)
    entry = ManifestEntry(
        table=group.table,
        topic=group.topic,
        partition=group.partition,
        first_offset=first,
        last_offset=last,
        rows=written.num_rows,
        path=path,
        partition_key=group.partition_key,
        bytes=len(data),
        written_at=time.time(),
        rotation_reason=COMPACTION_ROTATION_REASON,
        primary_key=primary_key,
        min_source_ts_ms=pc.min(timestamps).as_py(),
        max_source_ts_ms=pc.max(timestamps).as_py(),
        schema_fingerprint=group.files[-1].schema_fingerprint,
        schema_version=group.files[-1].schema_version,
        offset_ranges=runs if len(runs) > 1 else [],
        supersedes=[f.path for f in group.files],
    )

    def plan(state: ManifestState) -> list[ManifestEntry]:
        replaced = [f.path for f in group.files if f.path not in state.by_path]
        if replaced:
            raise CompactionConflictError(
                f"compacting {group}: {replaced} no longer live (compacted meanwhile)"
            )
        return [entry]

    try:
        manifest.commit(plan)
    except CompactionConflictError:
        # Another compactor may have listed this very file (same group, same name): keep it then.
        if path not in {e.path for e in live_entries(manifest.entries())}:
            storage.filesystem.delete_file(storage.full_path(path))
        raise
    return Compacted(entry, len(group.files), group.input_bytes, time.monotonic() - started)

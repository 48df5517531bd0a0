"""Bronze data files before they are listed: written so that no writer overwrites a listed file.

Two writers may write the same offsets at once (a worker that lost its partition without
knowing yet, and the partition's new owner). Only one of them lists its file (`Manifest.commit`),
but both write it first, under a name made from the first offset: the loser must not replace the
winner's file after the winner listed it. So a file is written to a hidden staging name and then
given its name only if that name is free (a hard link on a local filesystem). A name already
taken holds the same bytes (a flush retried after a crash, or the other writer's identical
file: either may be listed) or other bytes: then the file keeps a unique name of its own,
``<name>.<random>.parquet``. On object stores, where there is no cheap conditional copy, every
file gets a unique name.

A file written but never listed (its writer lost the race or crashed before its commit) is an
orphan: `orphans` finds them for the compactor to delete once they are old enough that no
writer can still be about to list them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow.fs as pafs

from binlake.bronze.layout import BRONZE_DIR
from binlake.object_log import object_log
from binlake.storage import LakeStorage

STAGED_SUFFIX = ".staged"


def write_unlisted(storage: LakeStorage, path: str, data: bytes, *, restoring: bool = False) -> str:
    """Write `data` as the bronze file `path`, or under a unique variant of `path` if another
    file holds that name; returns the name written. Raises StorageUnavailableError.

    `restoring`: `path` is a listed file that is lost (missing or damaged) and `data` its
    offsets written again: it is replaced in place, as every writer restoring it would.
    """
    if restoring:
        storage.write_atomic(path, data)
        return path
    if not storage.is_local:
        unique = unique_variant(path)
        storage.write_atomic(unique, data)
        return unique
    directory, name = os.path.split(path)
    staged = f"{directory}/.{name}.{uuid.uuid4().hex[:12]}{STAGED_SUFFIX}"
    storage.write_atomic(staged, data)
    objects = object_log(storage)
    try:
        if objects.link(staged, path) or _holds(storage, path, data):
            return path
        unique = unique_variant(path)
        objects.link(staged, unique)
        return unique
    finally:
        with contextlib.suppress(OSError):
            os.unlink(storage.full_path(staged))


def unique_variant(path: str) -> str:
    """`path` with a random part before its extension: a name no other writer will use."""
    stem, extension = os.path.splitext(path)
    return f"{stem}.{uuid.uuid4().hex[:12]}{extension}"


def _holds(storage: LakeStorage, path: str, data: bytes) -> bool:
    try:
        return storage.read_bytes(path) == data
    except FileNotFoundError:
        return False


@dataclass(frozen=True)
class Orphan:
    path: str
    bytes: int
    modified_at: float  # epoch seconds


def orphans(storage: LakeStorage, listed: Iterable[str], older_than: float) -> list[Orphan]:
    """Bronze data files (and staged files) no entry lists, last modified before `older_than`
    (epoch seconds). Superseded files are listed by their old entries' successors no more:
    pass the paths of every entry still in the manifest, not only the live ones, if the
    superseded files are to be left to their own retention."""
    keep = set(listed)
    selector = pafs.FileSelector(
        storage.full_path(BRONZE_DIR), recursive=True, allow_not_found=True
    )
    found: list[Orphan] = []
    prefix = storage.full_path("")
    for info in storage.filesystem.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        name = info.base_name
        if not (name.endswith(".parquet") or name.endswith(STAGED_SUFFIX)):
            continue
        relative = info.path[len(prefix) :].lstrip("/")
        if relative.startswith(f"{BRONZE_DIR}/_") or relative in keep:
            continue  # the manifest and dead letters live under bronze/_*
        modified = info.mtime.timestamp() if info.mtime is not None else 0.0
        if modified < older_than:
            found.append(Orphan(relative, int(info.size or 0), modified))
    return sorted(found, key=lambda orphan: orphan.path)


def delete_orphans(storage: LakeStorage, found: Iterable[Orphan]) -> int:
    """Delete the files `orphans` found; returns how many were deleted."""
    deleted = 0
    for orphan in found:
        with contextlib.suppress(FileNotFoundError):
            storage.filesystem.delete_file(storage.full_path(orphan.path))
            deleted += 1
    return deleted

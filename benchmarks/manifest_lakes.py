"""Lakes with a long bronze manifest for the manifest benchmarks, on local disk or on a real S3
server (SeaweedFS `weed mini`, started here in a temp dir and stopped by its PID).

A manifest of N entries is built in the shape the bronze workers leave, without N commits:

- the history, N - ``tail`` entries, as commits of ``per_commit`` entries each (created with
  the same create-if-absent as `Manifest.commit`, several at once on S3);
- a checkpoint as of the last history commit (the live files and high-water marks, what
  `Manifest` writes every 100 commits) and the ``_last_checkpoint`` hint pointing at it;
- ``tail`` commits of one entry each after it, as workers commit (a writer checkpoints every
  100 commits, so readers find up to 99 of them after the newest checkpoint).

Readers (the sensor, a starting worker) read the hint, the newest checkpoint and the commits
after it, so how the history was cut into commits does not change what they read; what they
read is one checkpoint holding every live file (here every file is live: no compaction ran,
the worst case) and the tail. `with_compactions` gives the other shape: after each hour's files,
the compactor's entry for each of its tables, superseding them (`compactor.rewrite`), so the
checkpoint lists few live files, each naming the paths it replaced.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from binlake.bronze.layout import COMPACTION_ROTATION_REASON, compacted_file_path
from binlake.bronze.manifest import SEQUENCE_DIGITS, Commit, Manifest, ManifestEntry, ManifestState
from binlake.local_stack.foreground import temporary_s3_server
from binlake.local_stack.s3_server import S3Server
from binlake.settings import Settings
from binlake.storage import LakeStorage

ACCESS_KEY = "bench-access-key"
SECRET_KEY = "bench-secret-key"  # guards a server bound to 127.0.0.1 for one run only


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """A SeaweedFS S3 server with a bucket `lake`, its data in a new temp dir removed after."""
    with temporary_s3_server(
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        bucket="lake",
        prefix="binlake-bench-s3-",
        stop_timeout=5.0,
    ) as server:
        yield server


def lake_settings(root: Path, prefix: str, server: S3Server | None) -> Settings:
    """Settings of a lake under `root` (local) or under `s3://lake/<prefix>` on `server`."""
    if server is None:
        return Settings(state_dir=root / "state", storage_url=str(root / prefix))
    return Settings(
        state_dir=root / "state",
        storage_url=f"s3://{server.bucket}/{prefix}",
        storage={
            "endpoint_url": server.endpoint_url,
            "region": server.region,
            "allow_http": True,
            "access_key_id": server.access_key,
            "secret_access_key": server.secret_key,
        },
    )


@dataclass(frozen=True)
class BuiltManifest:
    commits: int  # commit objects in the log
    checkpoint_seq: int
    checkpoint_bytes: int
    log_bytes: int  # bytes of all commit objects


def build_manifest(
    storage: LakeStorage, entries: Sequence[ManifestEntry], *, per_commit: int, tail: int
) -> BuiltManifest:
    """Write `entries` as the manifest of `storage`'s lake (see the module docstring)."""
    if len(entries) <= tail:
        raise ValueError(f"{len(entries)} entries leave no history before a tail of {tail}")
    manifest = Manifest(storage)
    objects = manifest.objects
    history, recent = entries[: len(entries) - tail], entries[len(entries) - tail :]
    state = ManifestState()
    blobs: list[tuple[int, bytes]] = []
    for start in range(0, len(history), per_commit):
        commit = Commit.of(state.next_seq, list(history[start : start + per_commit]), state)
        state.apply(commit)
        blobs.append((commit.seq, commit.to_json()))
    checkpoint_seq = state.next_seq - 1
    checkpointed = state.copy()
    checkpoint_bytes = len(checkpointed.to_json())
    for entry in recent:
        commit = Commit.of(state.next_seq, [entry], state)
        state.apply(commit)
        blobs.append((commit.seq, commit.to_json()))

    def create(item: tuple[int, bytes]) -> None:
        seq, data = item
        name = os.path.join(manifest.log_dir, f"{seq:0{SEQUENCE_DIGITS}d}.json")
        if storage.is_local:
            # Exclusive create without the fsyncs: the same bytes, 100k of them in seconds.
            with open(storage.full_path(name), "xb") as out:
                out.write(data)
        elif not objects.create(name, data):
            raise SystemExit(f"commit {name} existed already in a new lake")

    if storage.is_local:
        os.makedirs(storage.full_path(manifest.log_dir), exist_ok=True)
    with ThreadPoolExecutor(1 if storage.is_local else 16) as pool:
        list(pool.map(create, blobs))
    # The checkpoint and its hint exactly as a committing writer writes them.
    manifest._write_checkpoint(checkpointed)
    return BuiltManifest(
        commits=len(blobs),
        checkpoint_seq=checkpoint_seq,
        checkpoint_bytes=checkpoint_bytes,
        log_bytes=sum(len(data) for _, data in blobs),
    )


def with_compactions(files: Sequence[ManifestEntry]) -> list[ManifestEntry]:
    """`files` (in hour order) with, after each hour but the last, one compacted file per table
    and partition of that hour superseding that hour's files of it (offsets contiguous)."""
    out: list[ManifestEntry] = []
    hour: list[ManifestEntry] = []

    def compact() -> None:
        groups: dict[tuple[str, str, int], list[ManifestEntry]] = {}
        for entry in hour:
            groups.setdefault((entry.table, entry.topic, entry.partition), []).append(entry)
        for (table, topic, partition), group in groups.items():
            first, last = group[0].first_offset, group[-1].last_offset
            out.append(
                replace(
                    group[-1],
                    first_offset=first,
                    last_offset=last,
                    rows=sum(e.rows for e in group),
                    path=compacted_file_path(
                        table, group[0].partition_key, topic, partition, first, last
                    ),
                    bytes=sum(e.bytes for e in group) // 2,
                    rotation_reason=COMPACTION_ROTATION_REASON,
                    min_source_ts_ms=group[0].min_source_ts_ms,
                    supersedes=[e.path for e in group],
                )
            )

    for entry in files:
        if hour and entry.partition_key != hour[0].partition_key:
            compact()
            hour = []
        out.append(entry)
        hour.append(entry)
    return out


@contextmanager
def maybe_s3(enabled: bool) -> Iterator[S3Server | None]:
    """`s3_server()` if `enabled`, else None (local disk only)."""
    if not enabled:
        yield None
        return
    with s3_server() as server:
        yield server

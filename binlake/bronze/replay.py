"""Replay: move a consumer group of one table's topic back to a time or to offsets.

`plan_replay` works out, per partition, the group's current committed offset and the target, and
changes nothing (the dry run prints the plan); `apply_replay` moves the group's offsets. The
group's consumers must be stopped: Kafka refuses to move the offsets of a group with members,
and so does `apply_replay`, naming the group and its members.

For the bronze writer's group (the default), a replay never duplicates bronze: the worker skips
offsets held by intact files the manifest lists and writes again those whose file was lost (see
`streams.partition_writer`). The plan lists the lost files it will write again, and moves a
partition's target back to the first offset of a lost file it would start inside, so the file
is written whole under its own name. It refuses to move the bronze group forward, which would
leave offsets out of bronze. Other groups (a dashboard feed) are moved as asked, bronze aside.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from binlake.bronze.consumer_lag import LagReader, commit_time_for, partition_lag
from binlake.bronze.coverage import PartitionFiles, is_intact
from binlake.bronze.manifest import Manifest, ManifestEntry
from binlake.consumer_groups import GroupMembers, GroupOffsetsClient
from binlake.errors import GroupInUseError, ReplayError
from binlake.settings import Settings
from binlake.storage import LakeStorage
from binlake.timestamps import iso_time_ms


@dataclass(frozen=True)
class PartitionReset:
    """One partition's move: from the committed offset to the target."""

    partition: int
    current: int | None  # the group's committed offset; None if it has none
    target: int
    requested: int  # what was asked; below it only to start at a lost file's first offset
    rewritten_files: tuple[str, ...] = ()  # lost bronze files at or after the target

    @property
    def note(self) -> str:
        notes = []
        if self.target != self.requested:
            notes.append(f"moved back from {self.requested} to the first offset of a lost file")
        if self.rewritten_files:
            notes.append(f"{len(self.rewritten_files)} lost bronze file(s) written again")
        return "; ".join(notes)


@dataclass(frozen=True)
class ReplayPlan:
    """What `apply_replay` will do: the group, the table's topic and each partition's move."""

    group: str
    table: str
    topic: str
    bronze_writer: bool  # the group is the bronze writer's: bronze is checked against the manifest
    members: GroupMembers
    partitions: tuple[PartitionReset, ...] = field(default=())

    @property
    def targets(self) -> dict[int, int]:
        return {p.partition: p.target for p in self.partitions}


# Records counted per partition by a dry run before it says "at least": a count reads them all.
PREVIEW_READ_CAP = 100_000


@dataclass(frozen=True)
class RereadPreview:
    """What the group would read again on one partition, from its target to the last stable
    offset: data records (transaction markers and aborted records are none; a lower bound when
    not `exact`) and the source commit times (Debezium's source.ts_ms) of the first and last."""

    partition: int
    target: int
    stable_end: int
    records: int
    exact: bool
    first_commit_ms: int | None
    last_commit_ms: int | None

    @property
    def records_text(self) -> str:
        return str(self.records) if self.exact else f">= {self.records}"


def parse_partition_offsets(text: str) -> dict[int, int]:
    """`P:O[,P:O...]` as {partition: offset}; ReplayError naming what is wrong."""
    offsets: dict[int, int] = {}
    for item in text.split(","):
        partition, sep, offset = item.strip().partition(":")
        if not sep or not partition.strip().isdigit() or not offset.strip().isdigit():
            raise ReplayError(
                f"--from-offset {text!r}: {item.strip()!r} is not P:O (a partition and an "
                "offset, both whole numbers >= 0, e.g. 0:1200 or 0:1200,1:980)"
            )
        if int(partition) in offsets:
            raise ReplayError(f"--from-offset {text!r} names partition {int(partition)} twice")
        offsets[int(partition)] = int(offset)
    return offsets


def parse_time(text: str, *, now_ms: int | None = None) -> int:
    """An ISO 8601 time (UTC unless it has an offset) or epoch milliseconds, as epoch ms.

    ReplayError if it is neither or it is in the future (no record has that time yet).
    """
    stripped = text.strip()
    if stripped.isdigit():
        time_ms = int(stripped)
    else:
        parsed = iso_time_ms(stripped)
        if parsed is None:
            raise ReplayError(
                f"--from-time {text!r} is not an ISO 8601 time (e.g. 2026-11-21T10:00:00Z) "
                "or epoch milliseconds"
            )
        time_ms = parsed
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if time_ms > now_ms:
        raise ReplayError(
            f"--from-time {text!r} is in the future "
            f"({datetime.fromtimestamp(time_ms / 1000, UTC).isoformat()}, now is "
            f"{datetime.fromtimestamp(now_ms / 1000, UTC).isoformat()})"
        )
    return time_ms


def start_of_lost_range(
    files: PartitionFiles, target: int, intact: Callable[[ManifestEntry], bool]
) -> tuple[int, tuple[str, ...]]:
    """The bronze writer's target for `target`, and the lost files it will write again.

    A target inside a lost file moves back to that file's first offset (the file is written
    whole, under its own name); `intact(entry)` tells whether a listed file is intact.
    """
    lost = [entry for entry in files.files_between(target, 2**63 - 1) if not intact(entry)]
    start = target
    if lost and lost[0].first_offset < target:
        start = lost[0].first_offset
    return start, tuple(entry.path for entry in lost)


def plan_replay(
    settings: Settings,
    table: str,
    *,
    from_time_ms: int | None = None,
    from_offsets: dict[int, int] | None = None,
    group: str | None = None,
    kafka: GroupOffsetsClient | None = None,
) -> ReplayPlan:
    """The reset of `group` (default: the bronze writer's) on `table`'s topic; changes nothing.

    Exactly one of `from_time_ms` (every partition, to its first record at or after that time)
    and `from_offsets` ({partition: offset}, the partitions named) must be given.
    """
    if (from_time_ms is None) == (from_offsets is None):
        raise ReplayError("give exactly one of --from-time and --from-offset")
    if table not in settings.tables:
        raise ReplayError(f"unknown table {table!r}; the captured tables are {settings.tables}")
    group = group or settings.bronze.app_id
    topic = settings.topic_for(table)
    kafka = kafka or GroupOffsetsClient(settings.kafka.bootstrap_servers)
    partitions = kafka.partitions(topic)
    if from_offsets is not None:
        unknown = sorted(set(from_offsets) - set(partitions))
        if unknown:
            raise ReplayError(
                f"partition(s) {unknown} are not in topic {topic!r} (its partitions: {partitions})"
            )
        requested = dict(from_offsets)
    else:
        assert from_time_ms is not None
        requested = {p: kafka.offset_for_time(topic, p, from_time_ms) for p in partitions}
    current = kafka.committed(group, topic, requested)
    bronze_writer = group == settings.bronze.app_id
    storage = LakeStorage.from_settings(settings)
    manifest = Manifest(storage)
    in_bronze = manifest.last_offsets() if bronze_writer else {}
    resets = []
    for partition, offset in sorted(requested.items()):
        end = kafka.log_end(topic, partition)
        if offset > end:
            raise ReplayError(
                f"offset {offset} is past the end of {topic}[{partition}] (its next offset is "
                f"{end})"
            )
        committed = current.get(partition)
        target, rewritten = offset, ()
        if bronze_writer:
            # Only records count: a read_committed writer commits after its last record,
            # which may leave a commit marker (or aborted records) before the offset.
            if (
                committed is not None
                and offset > committed
                and kafka.records_between(topic, partition, committed, offset)
            ):
                raise ReplayError(
                    f"{topic}[{partition}]: offset {offset} is after the bronze writer's "
                    f"committed offset {committed}; moving {group!r} forward would leave offsets "
                    f"{committed}..{offset - 1} out of bronze"
                )
            # Kafka forgets an idle group's offsets (offsets.retention.minutes): the manifest
            # still says where bronze ends.
            bronze_next = max(
                in_bronze.get((topic, partition), -1) + 1, kafka.log_start(topic, partition)
            )
            if offset > bronze_next and kafka.records_between(
                topic, partition, bronze_next, offset
            ):
                raise ReplayError(
                    f"{topic}[{partition}]: offset {offset} is after the end of bronze (the "
                    f"next offset it needs is {bronze_next}); moving {group!r} there would "
                    f"leave offsets {bronze_next}..{offset - 1} out of bronze"
                )
            files = PartitionFiles.load(manifest, topic, partition, from_offset=offset)
            target, rewritten = start_of_lost_range(
                files, offset, lambda entry: is_intact(storage, entry)
            )
        resets.append(PartitionReset(partition, committed, target, offset, rewritten))
    return ReplayPlan(group, table, topic, bronze_writer, kafka.members(group), tuple(resets))


def wait_for_idle_group(
    kafka: GroupOffsetsClient, group: str, *, timeout_s: float, interval_s: float = 0.5
) -> GroupMembers:
    """The group's members once it has none active (a stopped consumer leaves at once; a killed
    one is dropped after its session timeout); GroupInUseError if it still has after
    `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        members = kafka.members(group)
        if not members.active:
            return members
        if time.monotonic() > deadline:
            raise GroupInUseError(members.refusal())
        time.sleep(interval_s)


def apply_replay(
    plan: ReplayPlan, settings: Settings, *, kafka: GroupOffsetsClient | None = None
) -> dict[int, int | None]:
    """Move the group's offsets to the plan's targets; returns the committed offsets after.

    GroupInUseError, with nothing moved, if the group has members now; ReplayError if its
    offsets moved since the plan was made.
    """
    kafka = kafka or GroupOffsetsClient(settings.kafka.bootstrap_servers)
    members = kafka.members(plan.group)
    if members.active:
        raise GroupInUseError(members.refusal())
    # The plan's checks (never forward, lost files) hold for the offsets it was made from.
    now = kafka.committed(plan.group, plan.topic, plan.targets)
    planned_from = {p.partition: p.current for p in plan.partitions}
    if now != planned_from:
        raise ReplayError(
            f"consumer group {plan.group!r} on {plan.topic} moved since the plan (from "
            f"{planned_from} to {now}); nothing changed, plan the replay again"
        )
    kafka.reset(plan.group, plan.topic, plan.targets)
    after = kafka.committed(plan.group, plan.topic, plan.targets)
    if after != plan.targets:
        raise ReplayError(
            f"consumer group {plan.group!r} on {plan.topic}: offsets are {after} after the "
            f"reset, not {plan.targets}"
        )
    return after


def preview_reread(
    plan: ReplayPlan,
    settings: Settings,
    *,
    kafka: GroupOffsetsClient | None = None,
    read_cap: int = PREVIEW_READ_CAP,
) -> tuple[RereadPreview, ...]:
    """Per partition of `plan`, what a reader starting at its target reads again (records are
    read, two values decoded); changes nothing."""
    kafka = kafka or GroupOffsetsClient(settings.kafka.bootstrap_servers)
    commit_time = commit_time_for(
        settings.kafka.value_format, settings.kafka.schema_registry_url, settings.kafka.topic_prefix
    )
    reader = LagReader(kafka, commit_time, read_cap=read_cap)
    previews = []
    for facts in reader.facts_from(plan.topic, dict(plan.targets)):
        lag = partition_lag(facts)
        reads = bool(lag.records)
        previews.append(
            RereadPreview(
                facts.partition,
                plan.targets[facts.partition],
                facts.stable_end,
                lag.records or 0,
                lag.exact,
                facts.oldest_pending_ms if reads else None,
                facts.newest_ms if reads else None,
            )
        )
    return tuple(previews)


def plan_replay_request(
    settings: Settings,
    table: str,
    *,
    from_time: str | None,
    from_offset: str | None,
    group: str | None = None,
    kafka: GroupOffsetsClient | None = None,
) -> ReplayPlan:
    """`plan_replay` for a request as the CLI and the Dagster job take it (text arguments)."""
    return plan_replay(
        settings,
        table,
        from_time_ms=None if from_time is None else parse_time(from_time),
        from_offsets=None if from_offset is None else parse_partition_offsets(from_offset),
        group=group,
        kafka=kafka,
    )

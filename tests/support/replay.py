"""What the replay tests share: a fake of the Kafka calls a replay plan makes (`FakeKafka`), and
a lake whose manifest lists four bronze files, offsets 0..39 of partition 0 and 0..6 of
partition 1 (fixture `lake`: its settings and storage)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from binlake.bronze.manifest import Manifest, ManifestEntry
from binlake.consumer_groups import GroupMembers
from binlake.errors import ReplayError
from binlake.settings import load_settings
from binlake.storage import LakeStorage
from tests.support.manifest import manifest_entry

TOPIC = "binlake.shop.orders"


def entry(first: int, last: int, partition: int = 0) -> ManifestEntry:
    return manifest_entry(
        first,
        last,
        partition=partition,
        path=f"bronze/shop.orders/date=2026-11-21/hour=10/{TOPIC}+{partition}+{first:020d}.parquet",
        partition_key="2026-11-21-10:00",
        bytes=10,
        written_at=0.0,
    )


@dataclass
class FakeKafka:
    """The GroupOffsetsClient calls, answered from dicts; records resets."""

    partitions_: list[int] = field(default_factory=lambda: [0, 1])
    committed_: dict[int, int | None] = field(default_factory=lambda: {0: 40, 1: None})
    ends: dict[int, int] = field(default_factory=lambda: {0: 40, 1: 7})
    by_time: dict[int, int] = field(default_factory=lambda: {0: 12, 1: 3})
    starts: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0})
    state: str = "EMPTY"
    not_records: dict[int, set[int]] = field(default_factory=dict)  # markers, aborted records
    resets: list[dict[int, int]] = field(default_factory=list)

    def partitions(self, topic: str) -> list[int]:
        if topic != TOPIC:
            raise ReplayError(f"topic {topic!r} does not exist")
        return self.partitions_

    def committed(self, group: str, topic: str, partitions) -> dict[int, int | None]:
        return {p: self.committed_.get(p) for p in partitions}

    def members(self, group: str) -> GroupMembers:
        return GroupMembers(group, self.state, ())

    def log_start(self, topic: str, partition: int) -> int:
        return self.starts[partition]

    def log_end(self, topic: str, partition: int) -> int:
        return self.ends[partition]

    def offset_for_time(self, topic: str, partition: int, time_ms: int) -> int:
        return self.by_time[partition]

    def records_between(self, topic: str, partition: int, start: int, end: int) -> int:
        return len([o for o in range(start, end) if o not in self.not_records.get(partition, ())])

    def reset(self, group: str, topic: str, offsets: dict[int, int]) -> None:
        self.resets.append(dict(offsets))
        self.committed_.update(offsets)


@pytest.fixture
def lake(tmp_path: Path) -> tuple[object, LakeStorage]:
    settings = load_settings(storage_url=str(tmp_path / "lake"), state_dir=tmp_path / "state")
    storage = LakeStorage.from_url(settings.lake_url)
    manifest = Manifest(storage)
    for first, last, partition in [(0, 9, 0), (10, 19, 0), (20, 39, 0), (0, 6, 1)]:
        e = entry(first, last, partition)
        storage.write_atomic(e.path, b"x" * e.bytes)
        manifest.append(e)
    return settings, storage

"""`binlake up` refuses a lake whose offsets the broker does not hold (a unit test of the
comparison; the broker side is a small fake of the two calls it makes)."""

from __future__ import annotations

import pytest

from binlake.bronze.manifest import Manifest, ManifestEntry
from binlake.errors import ConfigurationError
from binlake.local_stack import lake_broker_match
from binlake.settings import load_settings
from binlake.storage import LakeStorage
from tests.support.manifest import manifest_entry


class Broker:
    def __init__(self, ends: dict[tuple[str, int], int]):
        self.ends = ends

    def partitions(self, topic: str) -> list[int]:
        return sorted(p for t, p in self.ends if t == topic)

    def log_end(self, topic: str, partition: int) -> int:
        return self.ends[(topic, partition)]


def entry(topic: str, partition: int, first: int, last: int) -> ManifestEntry:
    return manifest_entry(
        first,
        last,
        topic=topic,
        partition=partition,
        path=f"bronze/{topic}+{partition}+{first}",
        partition_key="2026-12-07-10:00",
        bytes=1,
    )


@pytest.fixture
def settings(tmp_path):
    settings = load_settings(state_dir=tmp_path, storage_url=str(tmp_path / "lake"))
    manifest = Manifest(LakeStorage.from_url(settings.lake_url))
    manifest.append(entry("binlake.shop.orders", 0, 0, 9))
    manifest.append(entry("binlake.shop.orders", 1, 0, 4))
    return settings


def test_a_broker_holding_the_lakes_offsets_passes(settings) -> None:
    broker = Broker({("binlake.shop.orders", 0): 12, ("binlake.shop.orders", 1): 5})
    assert lake_broker_match.lake_behind_broker_problems(settings, broker) == []


def test_a_broker_that_starts_over_is_named_per_partition(settings) -> None:
    broker = Broker({("binlake.shop.orders", 0): 3})
    assert lake_broker_match.lake_behind_broker_problems(settings, broker) == [
        "binlake.shop.orders[0] holds offsets up to 9 in the lake but ends at 3 on the broker",
        "binlake.shop.orders[1] holds offsets up to 4 in the lake but does not exist on the broker",
    ]


def test_no_lake_yet_needs_nothing(tmp_path) -> None:
    settings = load_settings(state_dir=tmp_path, storage_url=str(tmp_path / "empty"))
    assert lake_broker_match.lake_behind_broker_problems(settings, Broker({})) == []


def test_the_refusal_says_what_to_do(settings, monkeypatch) -> None:
    monkeypatch.setattr(lake_broker_match, "GroupOffsetsClient", lambda servers: Broker({}))
    with pytest.raises(ConfigurationError, match="Restore the broker's data, or move the lake"):
        lake_broker_match.refuse_a_lake_the_broker_does_not_hold(settings)

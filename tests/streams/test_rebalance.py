"""The stalled worker's race of tests/integration/test_rebalance.py without a broker: two
`PartitionWriter`s of one partition (the stalled one and the new owner) flushing overlapping
offsets, in either order."""

from __future__ import annotations

from pathlib import Path

import pytest

from binlake.bronze.manifest import Manifest
from binlake.storage import LakeStorage
from cdc.json_decoding import decode_change
from streams.flush_policy import FlushPolicy
from streams.partition_writer import PartitionWriter, RotationReason


@pytest.mark.parametrize("first", ["new_owner", "stalled"])
def test_a_writer_that_lost_its_partition_cannot_duplicate_or_clobber_bronze(
    tmp_path: Path, dbz, bronze_kit, first: str
) -> None:
    """Two writers of one partition in one lake: the stalled worker's (which buffered offsets
    0..9 before its session expired) and the new owner's (which read 0..19 again from the
    committed offset). Whichever flushes first, bronze must end up with 0..19 exactly once:
    the second must neither append an overlapping entry nor rename its file over the first's
    (both are named after offset 0)."""
    lake_dir = tmp_path / "lake"
    storage = LakeStorage.from_url(str(lake_dir))
    orders = dbz.table()
    delivered: dict[tuple[int, int], tuple[str, int]] = {}

    def writer() -> PartitionWriter:  # each worker process has its own Manifest object
        return PartitionWriter(
            orders.topic,
            0,
            storage=storage,
            manifest=Manifest(storage),
            flush_policy=FlushPolicy(rows=1000, seconds=3600.0),
        )

    def feed(target: PartitionWriter, offsets: range) -> None:
        for offset in offsets:
            key, value = orders.change("c", offset, ts_ms=dbz.BASE_TS_MS + offset)
            event = decode_change(key, value, topic=orders.topic, topic_prefix=dbz.PREFIX)
            target.add(offset, event, token=offset)
            delivered[(0, offset)] = ("c", offset)

    stalled, new_owner = writer(), writer()
    feed(stalled, range(10))
    feed(new_owner, range(20))
    order = [new_owner, stalled] if first == "new_owner" else [stalled, new_owner]
    for target in order:
        target.flush(RotationReason.PARTITION_REVOKED if target is stalled else RotationReason.AGE)

    bronze_kit.assert_exactly_once(lake_dir, orders.topic, delivered)

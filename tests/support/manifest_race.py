"""Writers racing for the same offsets through one lake's manifest (threads or processes).

Every writer tries to list each batch of `BATCH` offsets of one topic-partition, in order; a
writer whose plan sees the batch in bronze already lists nothing for it. So each batch must be
listed exactly once, whoever wins it.
"""

from __future__ import annotations

import time

from binlake.bronze.manifest import Manifest, ManifestEntry, ManifestState
from binlake.storage import LakeStorage
from tests.support.manifest import manifest_entry

TOPIC_PARTITION = ("binlake.shop.orders", 0)
BATCH = 10


def batch_entry(batch: int, writer: str) -> ManifestEntry:
    first = batch * BATCH
    return manifest_entry(
        first,
        first + BATCH - 1,
        path=f"bronze/shop.orders/{first}.{writer}.parquet",
        partition_key="2026-11-21-08:00",
    )


def claim_batches(lake: str, writer: str, batches: int, start_at: float = 0.0) -> int:
    """Try to list every batch from `writer`; returns how many this writer won."""
    manifest = Manifest(LakeStorage.from_url(lake))
    while time.time() < start_at:  # processes start together, to collide
        time.sleep(0.001)
    won = 0
    for batch in range(batches):

        def plan(state: ManifestState, batch: int = batch) -> list[ManifestEntry]:
            if state.high_water.get(TOPIC_PARTITION, -1) >= batch * BATCH:
                return []  # another writer has it
            return [batch_entry(batch, writer)]

        won += len(manifest.commit(plan))
    return won

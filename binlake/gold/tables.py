"""Where each gold table of a lake lives: one Delta table per gold asset.

<lake>/gold/<name>          e.g. <lake>/gold/orders_by_hour_status, partitioned by its hour
"""

from __future__ import annotations

from binlake.errors import FinalError
from binlake.gold.delta_table import GoldDeltaTable
from binlake.storage import LakeStorage

# The gold tables a lake publishes, by name (the last part of the asset key).
GOLD_TABLE_NAMES: tuple[str, ...] = ("orders_by_hour_status",)


def gold_table_uri(lake_url: str, name: str) -> str:
    """Where the Delta table of gold `name` lives: ``<lake>/gold/<name>``."""
    return f"{lake_url.rstrip('/')}/gold/{name}"


def gold_table(storage: LakeStorage, name: str) -> GoldDeltaTable:
    """The Delta table of gold `name` in the lake `storage`, opened with its object-store
    options (endpoint, region, credentials; none for a local lake)."""
    if name not in GOLD_TABLE_NAMES:
        raise FinalError(f"no gold table {name!r}; the lake publishes {list(GOLD_TABLE_NAMES)}")
    return GoldDeltaTable(gold_table_uri(storage.url, name), storage.storage_options)

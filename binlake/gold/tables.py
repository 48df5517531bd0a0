"""Where each gold table of a lake lives: one Delta table per gold asset.

<lake>/gold/<name>          e.g. <lake>/gold/orders_by_hour_status, partitioned by its hour
"""

from __future__ import annotations

# The gold tables a lake publishes, by name (the last part of the asset key).
GOLD_TABLE_NAMES: tuple[str, ...] = ("orders_by_hour_status",)


def gold_table_uri(lake_url: str, name: str) -> str:
    """Where the Delta table of gold `name` lives: ``<lake>/gold/<name>``."""
    return f"{lake_url.rstrip('/')}/gold/{name}"

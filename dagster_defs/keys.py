"""Asset keys and partitions shared by every layer: the one place a key is spelled.

    bronze/<db>/<table>              external, hourly partitioned (one partition per commit hour)
    silver/<db>/<table>              current state of the table, unpartitioned
    gold/shop/changed_order_hours    external, hourly: hours of order creation whose orders or
                                     items changed in silver (reported by a sensor)
    gold/shop/orders_by_hour_status  aggregate of silver shop.orders and shop.order_items,
                                     hourly partitioned by order creation hour

Storage locations are not derived from keys: silver lives at ``<lake>/silver/<db>/<table>``
(``binlake.silver.tables``), gold at ``<lake>/gold/<name>``, name the key's last part
(``binlake.gold.tables``); both are Delta tables.
"""

from __future__ import annotations

import dagster as dg

from binlake.settings import Settings

BRONZE = "bronze"
SILVER = "silver"
GOLD = "gold"

ORDERS_TABLE = "shop.orders"
ORDER_ITEMS_TABLE = "shop.order_items"
GOLD_ORDERS_BY_HOUR_STATUS = dg.AssetKey([GOLD, "shop", "orders_by_hour_status"])
CHANGED_ORDER_HOURS = dg.AssetKey([GOLD, "shop", "changed_order_hours"])

# Asset tags; also usable in selections, e.g. `tag:binlake/layer=silver`.
TAG_LAYER = "binlake/layer"
TAG_TABLE = "binlake/table"


def _split(table: str) -> list[str]:
    db, name = table.split(".")
    return [db, name]


def bronze_key(table: str) -> dg.AssetKey:
    """Key of the external bronze asset of `<db>.<table>`."""
    return dg.AssetKey([BRONZE, *_split(table)])


def silver_key(table: str) -> dg.AssetKey:
    """Key of the silver (current state) asset of `<db>.<table>`."""
    return dg.AssetKey([SILVER, *_split(table)])


def silver_history_key(table: str) -> dg.AssetKey:
    """Key of the SCD type 2 history asset of `<db>.<table>`: ``silver/<db>/<table>_history``."""
    db, name = _split(table)
    return dg.AssetKey([SILVER, db, f"{name}_history"])


def writer_pool(key: dg.AssetKey) -> str:
    """The concurrency pool of the asset writing one Delta table: its key. The instance limits
    every pool to one running step (``concurrency.pools.default_limit``), so two runs never
    merge into the same table at once, while one run still updates every table."""
    return key.to_user_string()


def hourly_partitions(settings: Settings, start: str = "") -> dg.HourlyPartitionsDefinition:
    """Hourly partitions in UTC from `start` (``dagster_defs.partitions_start`` derives it from
    the lake), else ``dagster.partitions_start``, else 2024-01-01: bronze by commit hour, gold
    by the hour of its business time (order creation).

    ``end_offset=1`` makes the current hour a partition; without it Dagster 1.13 only lists
    completed hours and a change committed this hour could not be reported.
    """
    return dg.HourlyPartitionsDefinition(
        start_date=start or settings.dagster.partitions_start or "2024-01-01-00:00",
        end_offset=1,
        timezone="UTC",
    )


def gold_enabled(settings: Settings) -> bool:
    """Gold needs both shop.orders and shop.order_items to be captured."""
    return ORDERS_TABLE in settings.tables and ORDER_ITEMS_TABLE in settings.tables

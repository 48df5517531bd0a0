"""Read a stored silver or gold table without a Dagster run (CLI, demo, tests).

The asset's table as ``binlake.lake`` reads it, provenance columns kept: silver's current state
(tombstones left out), gold's every hour. Locations are decided in one place under
``settings.lake_url`` (``binlake.silver.tables``, ``binlake.gold.tables``), never rebuilt here.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import polars as pl

from binlake.lake import read_gold, read_silver
from binlake.settings import Settings
from dagster_defs.keys import SILVER


def read_layer_table(settings: Settings, key: Sequence[str] | dg.AssetKey) -> pl.DataFrame:
    """The stored value of a silver or gold asset, e.g. ``["silver", "shop", "orders"]``.

    Raises FileNotFoundError if the asset has not been materialized yet.
    """
    asset_key = key if isinstance(key, dg.AssetKey) else dg.AssetKey(list(key))
    if asset_key.path[0] == SILVER:
        *_, db, name = asset_key.path
        return read_silver(f"{db}.{name}", settings, with_provenance=True)
    return read_gold(asset_key.path[-1], settings, with_provenance=True)

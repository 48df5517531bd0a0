"""Read a stored silver or gold table without a Dagster run (CLI, demo, tests).

The value is loaded by the same IO manager the assets are written with, so the location of
``silver/shop/orders`` is decided in one place (dagster-polars' path logic under
``settings.lake_url``), never rebuilt here.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import polars as pl

from binlake.settings import Settings
from dagster_defs.resources import build_lake_io_manager


def read_layer_table(settings: Settings, key: Sequence[str] | dg.AssetKey) -> pl.DataFrame:
    """The stored value of a silver or gold asset, e.g. ``["silver", "shop", "orders"]``.

    Raises FileNotFoundError if the asset has not been materialized yet.
    """
    asset_key = key if isinstance(key, dg.AssetKey) else dg.AssetKey(list(key))
    io_manager = build_lake_io_manager(settings)
    io_manager.setup_for_execution(dg.build_init_resource_context())
    context = dg.build_input_context(
        asset_key=asset_key, dagster_type=dg.PythonObjectDagsterType(pl.DataFrame)
    )
    path = io_manager._get_path(context)  # the IO manager's own path logic
    if not path.exists():
        raise FileNotFoundError(f"{asset_key.to_user_string()} has not been stored yet ({path})")
    # load_from_path rather than load_input: the same reader without the run-log line per load
    # (outside a run it would be printed on the console).
    return io_manager.load_from_path(context=context, path=path)

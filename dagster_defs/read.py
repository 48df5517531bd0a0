"""Read a stored silver or gold table without a Dagster run (CLI, demo, tests).

Silver is read through the ``SilverLake`` resource (its current state), gold through the IO
manager it is written with (a partitioned gold asset: all its stored partitions together), so
every location is decided in one place under ``settings.lake_url``, never rebuilt here.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import polars as pl

from binlake.settings import Settings
from dagster_defs.keys import SILVER
from dagster_defs.resources import SilverLake, build_lake_io_manager, lake_access


def read_layer_table(settings: Settings, key: Sequence[str] | dg.AssetKey) -> pl.DataFrame:
    """The stored value of a silver or gold asset, e.g. ``["silver", "shop", "orders"]``.

    Raises FileNotFoundError if the asset has not been materialized yet.
    """
    asset_key = key if isinstance(key, dg.AssetKey) else dg.AssetKey(list(key))
    if asset_key.path[0] == SILVER:
        *_, db, name = asset_key.path
        silver = SilverLake(storage_url=settings.lake_url, access=lake_access(settings))
        return silver.table(f"{db}.{name}").read_current()
    io_manager = build_lake_io_manager(settings)
    io_manager.setup_for_execution(dg.build_init_resource_context())
    context = dg.build_input_context(
        asset_key=asset_key, dagster_type=dg.PythonObjectDagsterType(pl.DataFrame)
    )
    path = io_manager._get_path(context)  # the IO manager's own path logic
    # A partitioned asset is stored as <path without suffix>/<partition key><suffix>.
    partitions = io_manager.stored_files(path)
    if not partitions and not io_manager.path_exists(path):
        raise FileNotFoundError(f"{asset_key.to_user_string()} has not been stored yet ({path})")
    # load_from_path rather than load_input: the same reader without the run-log line per load
    # (outside a run it would be printed on the console).
    frames = [io_manager.load_from_path(context=context, path=p) for p in partitions or [path]]
    return pl.concat(frames, how="vertical_relaxed")

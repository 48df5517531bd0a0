"""Silver assets: one current-state table per captured table, rebuilt from all of bronze."""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
import polars as pl

from binlake.bronze_layout import SOURCE_TS_MS
from dagster_defs.automation import SILVER_CONDITION
from dagster_defs.keys import SILVER, TAG_LAYER, TAG_TABLE, bronze_key, silver_key
from dagster_defs.resources import LAKE_IO_MANAGER, BronzeLake
from dagster_defs.silver.logic import current_state


def build_silver_asset(table: str) -> dg.AssetsDefinition:
    key = silver_key(table)

    @dg.asset(
        key=key,
        deps=[bronze_key(table)],
        io_manager_key=LAKE_IO_MANAGER,
        automation_condition=SILVER_CONDITION,
        group_name=SILVER,
        tags={TAG_LAYER: SILVER, TAG_TABLE: table},
        kinds={"polars", "parquet"},
        description=f"Current state of {table}: the latest change of each key, deletes removed.",
    )
    def _silver(context: dg.AssetExecutionContext, bronze_lake: BronzeLake) -> dg.Output[pl.DataFrame]:
        read = bronze_lake.read_table(table)
        state = current_state(read.frame, read.primary_key)
        metadata: dict[str, Any] = {
            "row_count": state.height,
            "manifest_entries_read": read.entries_read,
            "manifest_bytes_read": read.manifest_bytes,
            "bronze_rows_read": read.frame.height,
            "primary_key": ",".join(read.primary_key) or "(none: all columns)",
        }
        if read.frame.height and SOURCE_TS_MS in read.frame.columns:
            max_ts = read.frame[SOURCE_TS_MS].max()
            if max_ts is not None:
                metadata["max_source_ts_ms"] = int(max_ts)  # type: ignore[arg-type]
                metadata["max_source_ts"] = datetime.fromtimestamp(
                    int(max_ts) / 1000, tz=UTC  # type: ignore[arg-type]
                ).isoformat()
        context.log.info(
            f"{table}: {read.frame.height} bronze rows from {read.entries_read} files -> "
            f"{state.height} current rows"
        )
        return dg.Output(state, metadata=metadata)

    return _silver

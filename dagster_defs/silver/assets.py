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

# Eager automation marks every bronze report made before silver's materialization as handled.
# A file that reached the manifest while silver was computing would then wait for the next
# change to be picked up, so silver reads again until the manifest stops growing under it.
MAX_CATCH_UP_READS = 5


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
    def _silver(
        context: dg.AssetExecutionContext, bronze_lake: BronzeLake
    ) -> dg.Output[pl.DataFrame]:
        for _ in range(MAX_CATCH_UP_READS):
            read = bronze_lake.read_table(table)
            state = current_state(read.frame, read.primary_key)
            if bronze_lake.manifest_size() == read.manifest_bytes:
                break
        metadata: dict[str, Any] = {
            "row_count": state.height,
            "manifest_entries_read": read.entries_read,
            "manifest_bytes_read": read.manifest_bytes,
            "bronze_rows_read": read.frame.height,
            "primary_key": ",".join(read.primary_key) or "(none: all columns)",
        }
        max_ts = read.frame[SOURCE_TS_MS].max() if SOURCE_TS_MS in read.frame.columns else None
        if max_ts is not None:
            ts_ms = int(max_ts)  # type: ignore[call-overload]
            metadata["max_source_ts_ms"] = ts_ms
            metadata["max_source_ts"] = datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat()
        context.log.info(
            f"{table}: {read.frame.height} bronze rows from {read.entries_read} files -> "
            f"{state.height} current rows"
        )
        return dg.Output(state, metadata=metadata)

    return _silver

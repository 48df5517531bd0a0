"""Bronze assets: one external asset per captured table, written by the Faust bronze worker."""

from __future__ import annotations

import dagster as dg

from binlake.bronze.layout import table_directory
from binlake.settings import Settings
from dagster_defs.freshness.check import freshness_note
from dagster_defs.keys import BRONZE, TAG_LAYER, TAG_TABLE, bronze_key


def build_bronze_specs(
    settings: Settings, partitions: dg.PartitionsDefinition
) -> list[dg.AssetSpec]:
    return [
        dg.AssetSpec(
            key=bronze_key(table),
            partitions_def=partitions,
            group_name=BRONZE,
            description=(
                f"Every change of {table} as captured from the binlog, appended to hourly "
                "Parquet files by the bronze worker (not materialized by Dagster; the manifest "
                "sensor reports each new file). "
                + freshness_note(BRONZE, settings.freshness.bronze_minutes)
            ),
            metadata={
                "binlake/table": table,
                "binlake/topic": settings.topic_for(table),
                "binlake/directory": table_directory(table),
            },
            tags={TAG_LAYER: BRONZE, TAG_TABLE: table},
            kinds={"parquet"},
        )
        for table in settings.tables
    ]

"""Silver history assets: an SCD type 2 Delta table for each table in ``silver.history_tables``.

``silver/<db>/<table>_history`` is built from bronze like the current state
(``dagster_defs.silver.assets``), independently of it: its own consumed offsets, the same PII
masking, the same automation. The rows and their validity are ``binlake.silver.history``'s.
"""

from typing import Any

import dagster as dg

from binlake.settings import Settings
from binlake.silver.incremental import source_time_metadata, unconsumed_reads
from binlake.silver.merge_changes import append_history_changes
from binlake.silver.pii import PiiPolicy
from binlake.silver.schema_guard import completed_resyncs
from dagster_defs.keys import silver_history_key
from dagster_defs.resources import BronzeLake, SilverLake
from dagster_defs.silver.assets import silver_asset


def build_history_asset(table: str, settings: Settings) -> dg.AssetsDefinition:
    pii = PiiPolicy.from_settings(settings.silver)

    @silver_asset(
        silver_history_key(table),
        table,
        settings,
        description=f"History of {table} (SCD type 2, Delta): one row per change with "
        "valid_from/valid_to/is_current, ordered by binlog position; a delete is a zero-length "
        "version with op 'd'; personal data masked.",
    )
    def _history(
        context: dg.AssetExecutionContext, bronze_lake: BronzeLake, silver_lake: SilverLake
    ) -> dg.MaterializeResult:
        target = silver_lake.history(table)
        consumed = target.consumed()
        inserted = updated = files_read = 0
        masked: list[str] = []
        primary_key: list[str] = []
        bronze = bronze_lake.reader()
        for read in unconsumed_reads(
            bronze, table, consumed, completed_resyncs(bronze.storage, table)
        ):
            files_read += read.entries_read
            if read.frame.height:
                primary_key = read.primary_key
                appended = append_history_changes(
                    target, table, read.frame, primary_key, consumed, pii, read.entries
                )
                stats, masked = appended.stats, appended.masked_columns
                inserted += stats.inserted
                updated += stats.updated
                context.log.info(
                    f"{table} history: {stats.changes} changes from {read.frame.height} bronze "
                    f"rows in {read.entries_read} files: +{stats.inserted} versions, "
                    f"{stats.updated} re-dated"
                    + (f" -> version {stats.version}" if stats.committed else " (no commit)")
                )
        # A run that adds no version commits nothing (Delta has no empty commit); its offsets
        # are read again next time and found to be duplicates again.
        versions, current = target.counts()
        metadata: dict[str, Any] = {
            "row_count": versions,
            "current_rows": current,
            "delta_version": target.version(),
            "versions_added": inserted,
            "versions_updated": updated,
            "bronze_files_read": files_read,
            "manifest_cursor": consumed.manifest_cursor,
            "masked_columns": ",".join(masked) or "(none)",
            "primary_key": ",".join(primary_key) or "(none: all columns)",
        }
        metadata.update(source_time_metadata(target.newest_source_ts_ms()))
        return dg.MaterializeResult(metadata=metadata)

    return _history

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
from dagster_defs.silver.assets import BronzeReadTally, silver_asset


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
        inserted = updated = 0
        tally = BronzeReadTally()
        bronze = bronze_lake.reader()
        for read in unconsumed_reads(
            bronze, table, consumed, completed_resyncs(bronze.storage, table)
        ):
            tally.files_read += read.entries_read
            if read.frame.height:
                appended = append_history_changes(
                    target, table, read.frame, read.primary_key, consumed, pii, read.entries
                )
                stats = appended.stats
                tally.masked_columns, tally.primary_key = appended.masked_columns, read.primary_key
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
            **tally.metadata(consumed),
        }
        metadata.update(source_time_metadata(target.newest_source_ts_ms()))
        return dg.MaterializeResult(metadata=metadata)

    return _history

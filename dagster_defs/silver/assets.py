"""Silver assets: one current-state Delta table per captured table, updated by MERGE.

A run reads only the bronze changes the table has not merged yet (manifest entries after its
cursor, offsets outside its consumed ranges), keeps the newest change per key, masks personal
data, and merges the result in one Delta commit that also records the new consumed offsets. So
a run costs what was new in bronze, and a re-run with nothing new changes nothing.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from binlake.settings import Settings
from binlake.silver.consumed import ConsumedOffsets
from binlake.silver.incremental import source_time_metadata, unconsumed_reads
from binlake.silver.merge_changes import merge_changes
from binlake.silver.pii import PiiPolicy
from binlake.silver.resync_sweep import sweep_resyncs
from binlake.silver.schema_guard import completed_resyncs
from binlake.silver.schema_heal import heal_on_refusal
from dagster_defs.automation import SILVER_CONDITION
from dagster_defs.freshness.check import freshness_note
from dagster_defs.keys import SILVER, TAG_LAYER, TAG_TABLE, bronze_key, silver_key, writer_pool
from dagster_defs.resources import SILVER_IO_MANAGER, BronzeLake, SilverLake


def silver_asset(
    key: dg.AssetKey, table: str, settings: Settings, *, description: str, **options: Any
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """``dg.asset`` for a silver Delta table `key` of `table` built from its bronze: silver's
    automation, group, tags, writer pool and freshness note (`options`: more arguments)."""
    return dg.asset(
        key=key,
        deps=[bronze_key(table)],
        automation_condition=SILVER_CONDITION,
        group_name=SILVER,
        tags={TAG_LAYER: SILVER, TAG_TABLE: table},
        pool=writer_pool(key),
        kinds={"polars", "deltalake"},
        description=f"{description} {freshness_note(SILVER, settings.freshness.silver_minutes)}",
        **options,
    )


@dataclass
class BronzeReadTally:
    """What one run of a silver asset read from bronze, for its materialization's metadata."""

    files_read: int = 0
    masked_columns: list[str] = field(default_factory=list)  # of the last read written
    primary_key: list[str] = field(default_factory=list)

    def metadata(self, consumed: ConsumedOffsets) -> dict[str, Any]:
        """The entries every silver table reports after its own (`consumed`: at the run's start)."""
        return {
            "bronze_files_read": self.files_read,
            "manifest_cursor": consumed.manifest_cursor,
            "masked_columns": ",".join(self.masked_columns) or "(none)",
            "primary_key": ",".join(self.primary_key) or "(none: all columns)",
        }


def build_silver_asset(table: str, settings: Settings) -> dg.AssetsDefinition:
    key = silver_key(table)
    pii = PiiPolicy.from_settings(settings.silver)

    @silver_asset(
        key,
        table,
        settings,
        io_manager_key=SILVER_IO_MANAGER,
        description=f"Current state of {table} (Delta, MERGE by key): the newest change of each "
        "key by binlog position, personal data masked. A deleted key stays as a tombstone row "
        "(_deleted = true) that current-state readers (binlake.lake.read_silver, the SQL views) "
        "leave out: rows_live counts what they see, tombstones the rest.",
    )
    def _silver(
        context: dg.AssetExecutionContext, bronze_lake: BronzeLake, silver_lake: SilverLake
    ) -> dg.MaterializeResult:
        target = silver_lake.table(table)
        consumed = target.consumed()
        keys_merged = changes_read = 0
        tally = BronzeReadTally()
        merged_version = target.merged_schema_version()
        bronze = bronze_lake.reader()
        resyncs = completed_resyncs(bronze.storage, table)
        reads = unconsumed_reads(bronze, table, consumed, resyncs, merged_version)
        for read in heal_on_refusal(reads, settings, log=context.log):
            tally.files_read += read.entries_read
            if read.frame.height:
                merged = merge_changes(
                    target,
                    table,
                    read.frame,
                    read.primary_key,
                    consumed,
                    pii,
                    column_defaults=read.column_defaults,
                    schema_version=read.schema_version,
                    # every read reaching here passed the healed-steps check
                    replace_incompatible=bool(resyncs),
                    entries=read.entries,
                )
                stats = merged.stats
                tally.masked_columns, tally.primary_key = merged.masked_columns, read.primary_key
                keys_merged += stats.source_rows
                changes_read += read.frame.height
                context.log.info(
                    f"{table}: merged {stats.source_rows} keys from {read.frame.height} bronze "
                    f"rows in {read.entries_read} files (+{stats.inserted} rows, "
                    f"{stats.updated} updated) -> version {stats.version}"
                )
        # A resync Debezium finished and this run merged to its end removes what it did not see.
        sweeps = sweep_resyncs(bronze.storage, target, table, log=context.log.info)
        # A run with nothing new commits nothing (Delta has no empty commit): its cursor is
        # not advanced, and the next run skips the same entries again by their offsets.
        rows_live, tombstones = target.count_stored()
        metadata: dict[str, Any] = {
            # Dagster's standard row count is the current state's: what read_silver returns.
            "row_count": rows_live,
            "rows_live": rows_live,
            "tombstones": tombstones,  # deleted keys kept so late older changes stay out
            "delta_version": target.version(),
            "changes_read": changes_read,  # bronze change rows this run read
            "keys_merged": keys_merged,  # keys whose newest change was merged
            **tally.metadata(consumed),
        }
        if sweeps:
            metadata["resyncs_swept"] = ",".join(o.resync_id for o in sweeps if o.swept) or "(none)"
            metadata["resyncs_waiting"] = (
                ",".join(f"{o.resync_id}: {o.waiting_for}" for o in sweeps if not o.swept)
                or "(none)"
            )
        metadata.update(source_time_metadata(target.newest_source_ts_ms()))
        return dg.MaterializeResult(metadata=metadata)

    return _silver

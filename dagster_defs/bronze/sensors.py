"""The manifest sensor: reports each new bronze file as a materialization of its hour.

The cursor is the manifest's next commit number (`Manifest.read_since`), so a tick reads only
what was committed since the previous one, however many files bronze already holds. A cursor
stored before the manifest became a log of commits is a byte offset into the former single-file
manifest; the log numbers its commits after that file's length, so such a cursor keeps meaning
"what came after it".

Each reported file also carries the bronze writer's consumer lag on its table when the tick
ran (``lag_records``, ``lag_seconds``; see `binlake.bronze.consumer_lag`): how far bronze is behind
Kafka, which files arriving do not show.
"""

import re
from typing import Any

import dagster as dg

from binlake.bronze.consumer_lag import TableLag
from binlake.bronze.layout import COMPACTION_ROTATION_REASON
from binlake.bronze.manifest import ManifestEntry
from binlake.errors import ConfigurationError
from binlake.settings import Settings
from dagster_defs.declare import running_sensor
from dagster_defs.keys import bronze_key
from dagster_defs.resources import BronzeLake, ConsumerLagSource

MANIFEST_SENSOR_NAME = "bronze_manifest_sensor"

_PARTITION_KEY = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{2}:00$")


def parse_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        value = int(cursor)
    except ValueError:
        raise ValueError(f"manifest sensor cursor {cursor!r} is not a manifest position") from None
    if value < 0:
        raise ValueError(f"manifest sensor cursor {cursor!r} is negative")
    return value


def entry_metadata(entry: ManifestEntry, manifest_offset: int) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "table": entry.table,
        "topic": entry.topic,
        "partition": entry.partition,
        "first_offset": entry.first_offset,
        "last_offset": entry.last_offset,
        "rows": entry.rows,
        "bytes": entry.bytes,
        "path": dg.MetadataValue.path(entry.path),
        "rotation_reason": entry.rotation_reason,
        "written_at": dg.MetadataValue.timestamp(entry.written_at),
        "primary_key": ",".join(entry.primary_key),
        "manifest_cursor_after": manifest_offset,
    }
    if entry.min_source_ts_ms is not None:
        metadata["min_source_ts"] = dg.MetadataValue.timestamp(entry.min_source_ts_ms / 1000)
    if entry.max_source_ts_ms is not None:
        metadata["max_source_ts"] = dg.MetadataValue.timestamp(entry.max_source_ts_ms / 1000)
    return metadata


def lag_metadata(lag: TableLag | str) -> dict[str, Any]:
    """The consumer lag as event metadata. `lag_records` is a lower bound when
    `lag_records_exact` is False; both figures are null when `lag_state` is not "ok"."""
    if isinstance(lag, str):
        return {"lag_state": lag, "lag_records": None, "lag_seconds": None}
    return {
        "lag_state": lag.state,
        "lag_records": lag.records,
        "lag_records_exact": lag.exact,
        "lag_seconds": None if lag.seconds is None else dg.MetadataValue.float(lag.seconds),
    }


def build_manifest_sensor(
    settings: Settings, partitions: dg.HourlyPartitionsDefinition
) -> dg.SensorDefinition:
    tables = frozenset(settings.tables)
    max_entries = settings.dagster.sensor_max_files_per_tick
    first_partition = partitions.get_first_partition_key()
    if first_partition is None:
        raise ConfigurationError(
            f"dagster.partitions_start={settings.dagster.partitions_start!r} gives no partitions"
        )

    @running_sensor(
        name=MANIFEST_SENSOR_NAME,
        interval_seconds=settings.dagster.sensor_interval_seconds,
        description="Reads the bronze manifest from its commit-number cursor and reports each new "
        "bronze file as a materialization of its table's hourly partition.",
    )
    def bronze_manifest_sensor(
        context: dg.SensorEvaluationContext,
        bronze_lake: BronzeLake,
        consumer_lag: ConsumerLagSource,
    ) -> dg.SensorResult:
        cursor = parse_cursor(context.cursor)
        size = bronze_lake.manifest_size()
        if size < cursor:
            # The manifest only grows; a shorter one is a new lake. Start over rather than wait
            # forever for commits that will never come.
            context.log.warning(
                f"bronze manifest ends at {size}, less than the cursor {cursor}: the lake was "
                "replaced; reading it again from the start"
            )
            cursor = 0
        # Capped, so a cold start over a long manifest is spread over several ticks instead of
        # one tick storing every event at once.
        entries, next_cursor = bronze_lake.read_manifest_since(cursor, max_entries)
        reported: list[ManifestEntry] = []
        skipped_tables: dict[str, int] = {}
        compactions = expiries = 0
        for entry in entries:
            if not entry.is_file:
                expiries += 1  # files dropped by bronze retention: silver has them already
                continue
            if entry.rotation_reason == COMPACTION_ROTATION_REASON:
                compactions += 1  # the same rows in fewer files: nothing new to report
                continue
            # Other entries that supersede a file are a replay writing a lost file again: its
            # rows may be new to silver, so they are reported like any file.
            if entry.table not in tables:
                skipped_tables[entry.table] = skipped_tables.get(entry.table, 0) + 1
                continue
            if (
                not _PARTITION_KEY.match(entry.partition_key)
                or entry.partition_key < first_partition
            ):
                # Not reported: measured on Dagster 1.13, neither an event without a partition
                # nor one for a partition outside the definition updates partition status or
                # triggers silver. The file still belongs to bronze: silver reads every file
                # the manifest lists, the next time any in-range hour is reported.
                context.log.warning(
                    f"bronze file {entry.path} of {entry.table} is in hour "
                    f"{entry.partition_key!r}, outside the bronze partitions (first "
                    f"{first_partition}); not reported. Set dagster.partitions_start "
                    "(BINLAKE_DAGSTER__PARTITIONS_START) earlier to report such hours."
                )
                continue
            reported.append(entry)
        lags = consumer_lag.measure(sorted({e.table for e in reported})) if reported else {}
        events = [
            dg.AssetMaterialization(
                asset_key=bronze_key(entry.table),
                partition=entry.partition_key,
                description=f"bronze file {entry.path}",
                metadata={**entry_metadata(entry, next_cursor), **lag_metadata(lags[entry.table])},
            )
            for entry in reported
        ]
        for table, count in sorted(skipped_tables.items()):
            context.log.info(f"skipped {count} bronze file(s) of {table}: not in settings.tables")
        if next_cursor == cursor and not events:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"no new manifest entries after byte {cursor}"),
                cursor=str(cursor),
            )
        context.log.info(
            f"manifest positions {cursor}..{next_cursor}: {len(entries)} entries, "
            f"{len(events)} reported, {compactions} compacted file(s) and {expiries} retention "
            "line(s) not reported"
        )
        return dg.SensorResult(asset_events=events, cursor=str(next_cursor))

    return bronze_manifest_sensor

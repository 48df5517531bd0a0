"""The freshness table: every freshness check's latest result, one Delta table at
``<lake>/_health/freshness``, replaced whole by each freshness-sensor tick.

Columns (the contract the SQL view ``lake.freshness`` and ``binlake status`` read): ``layer``
(bronze|silver|gold), ``asset`` (e.g. "silver/shop/orders"), ``source_tables`` (comma-joined
"db.table"), ``newest_source_commit`` (the newest source commit the layer holds; null when it
holds nothing), ``lag_seconds`` (the figure compared to the SLO; null when unknown),
``slo_seconds``, ``passed``, ``checked_at``.

A tick every 30 s would grow the Delta log by ~2,900 commits a day, so every
``MAINTENANCE_EVERY`` versions the writer checkpoints, drops log entries older than the log
retention and vacuums data files no version within ``FILE_RETENTION_HOURS`` needs (kept that long
so a reader holding an older snapshot still finds its files).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from binlake.storage import LakeStorage

FRESHNESS_TABLE = "_health/freshness"
MAINTENANCE_EVERY = 20  # versions: ten minutes at one tick per 30 s
FILE_RETENTION_HOURS = 1
LOG_RETENTION = "interval 1 hours"

SCHEMA = pa.schema(
    [
        pa.field("layer", pa.string(), nullable=False),
        pa.field("asset", pa.string(), nullable=False),
        pa.field("source_tables", pa.string(), nullable=False),
        pa.field("newest_source_commit", pa.timestamp("us", tz="UTC")),
        pa.field("lag_seconds", pa.float64()),
        pa.field("slo_seconds", pa.float64(), nullable=False),
        pa.field("passed", pa.bool_(), nullable=False),
        pa.field("checked_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


@dataclass(frozen=True)
class FreshnessRow:
    """One freshness check's result; times are epoch seconds."""

    layer: str
    asset: str
    source_tables: tuple[str, ...]
    newest_source_commit: float | None
    lag_seconds: float | None
    slo_seconds: float
    passed: bool
    checked_at: float


def freshness_table_uri(lake_url: str) -> str:
    """Where the freshness table of the lake at `lake_url` lives: ``<lake>/_health/freshness``."""
    return f"{lake_url.rstrip('/')}/{FRESHNESS_TABLE}"


def _micros(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1_000_000)


def to_arrow(rows: Sequence[FreshnessRow]) -> pa.Table:
    """`rows` in the table's schema (an empty table for no rows)."""
    return pa.Table.from_pydict(
        {
            "layer": [r.layer for r in rows],
            "asset": [r.asset for r in rows],
            "source_tables": [",".join(r.source_tables) for r in rows],
            "newest_source_commit": [_micros(r.newest_source_commit) for r in rows],
            "lag_seconds": [r.lag_seconds for r in rows],
            "slo_seconds": [float(r.slo_seconds) for r in rows],
            "passed": [r.passed for r in rows],
            "checked_at": [_micros(r.checked_at) for r in rows],
        },
        schema=SCHEMA,
    )


def write_freshness_table(
    storage: LakeStorage,
    rows: Sequence[FreshnessRow],
    *,
    maintenance_every: int = MAINTENANCE_EVERY,
    file_retention_hours: int = FILE_RETENTION_HOURS,
    log_retention: str = LOG_RETENTION,
) -> int:
    """Replace the freshness table with `rows`; the table's new version.

    Every `maintenance_every` versions: checkpoint, expired log entries removed, vacuum.
    """
    uri = freshness_table_uri(storage.url)
    options = storage.storage_options
    write_deltalake(
        uri,
        to_arrow(rows),
        mode="overwrite",
        schema_mode="overwrite",
        storage_options=options,
        configuration={
            "delta.logRetentionDuration": log_retention,
            "delta.deletedFileRetentionDuration": f"interval {file_retention_hours} hours",
        },
    )
    table = DeltaTable(uri, storage_options=options)
    version = table.version()
    if version % maintenance_every == 0:
        # Vacuum first: it finds what to delete through the remove actions the log still holds.
        # Full mode also deletes files no commit names (a write that failed halfway).
        table.vacuum(
            retention_hours=file_retention_hours,
            enforce_retention_duration=False,
            dry_run=False,
            full=True,
        )
        table.create_checkpoint()
        table.cleanup_metadata()
    return version


def read_freshness_rows(storage: LakeStorage) -> list[FreshnessRow] | None:
    """The freshness table's rows; None when no freshness sensor has written it yet."""
    try:
        table = DeltaTable(
            freshness_table_uri(storage.url), storage_options=storage.storage_options
        )
    except TableNotFoundError:
        return None
    return [
        FreshnessRow(
            layer=row["layer"],
            asset=row["asset"],
            source_tables=tuple(t for t in row["source_tables"].split(",") if t),
            newest_source_commit=_seconds(row["newest_source_commit"]),
            lag_seconds=row["lag_seconds"],
            slo_seconds=row["slo_seconds"],
            passed=row["passed"],
            checked_at=_seconds(row["checked_at"]) or 0.0,
        )
        for row in table.to_pyarrow_table().to_pylist()
    ]


def _seconds(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()

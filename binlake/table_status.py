"""Per-table view of the lake for `binlake status`: source rows, newest bronze file, silver rows."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pymysql

from binlake.manifest import Manifest, ManifestEntry, live_entries
from binlake.settings import Settings
from binlake.source_db import count_rows
from binlake.storage import LakeStorage


@dataclass(frozen=True)
class TableStatus:
    table: str
    source_rows: int | None
    bronze_files: int
    newest_bronze_file: str | None
    newest_bronze_age_s: float | None
    silver_rows: int | None


def collect_table_status(settings: Settings) -> list[TableStatus]:
    from dagster_defs.keys import silver_key
    from dagster_defs.read import read_layer_table

    newest: dict[str, ManifestEntry] = {}
    files: dict[str, int] = {}
    # The files bronze holds: not those compacted away or expired, nor a retention line.
    for entry in live_entries(Manifest(LakeStorage.from_url(settings.lake_url)).entries()):
        files[entry.table] = files.get(entry.table, 0) + 1
        if entry.table not in newest or entry.written_at > newest[entry.table].written_at:
            newest[entry.table] = entry
    statuses = []
    for table in settings.tables:
        try:
            source_rows = count_rows(settings, table)
        except pymysql.err.OperationalError:
            source_rows = None
        try:
            silver_rows = read_layer_table(settings, silver_key(table)).height
        except FileNotFoundError:
            silver_rows = None
        entry = newest.get(table)
        statuses.append(
            TableStatus(
                table=table,
                source_rows=source_rows,
                bronze_files=files.get(table, 0),
                newest_bronze_file=entry.path.rsplit("/", 1)[-1] if entry else None,
                newest_bronze_age_s=time.time() - entry.written_at if entry else None,
                silver_rows=silver_rows,
            )
        )
    return statuses

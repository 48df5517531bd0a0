"""From bronze changes to the current state of a table (pure polars, no Dagster)."""

from __future__ import annotations

import polars as pl

from binlake.bronze_layout import (
    CHANGE_ORDER,
    OFFSET,
    OP,
    PROVENANCE_COLUMNS,
    SOURCE_FILE,
    SOURCE_POS,
    SOURCE_ROW,
    SOURCE_TS_MS,
)
from binlake.errors import FinalError
from cdc.envelope import TOMBSTONE

# Provenance kept in silver next to the table's own columns.
SILVER_PROVENANCE = (SOURCE_TS_MS, OFFSET, OP)
_EMPTY_PROVENANCE_SCHEMA = {SOURCE_TS_MS: pl.Int64, OFFSET: pl.Int64, OP: pl.String}

DELETE = "d"


def table_columns(changes: pl.DataFrame) -> list[str]:
    """The source table's own columns, in bronze order."""
    return [c for c in changes.columns if c not in PROVENANCE_COLUMNS]


def current_state(changes: pl.DataFrame, primary_key: list[str]) -> pl.DataFrame:
    """The latest version of every row that still exists.

    For each key (the primary key, or every table column when the table has none) the change
    latest in ``CHANGE_ORDER`` (binlog file, position, row, then Kafka offset) wins; keys whose
    latest change is a delete are dropped. Tombstones (``_op == 't'``) carry no row and are
    ignored. Snapshot reads (``r``) count as inserts. Re-delivered duplicates of one change are
    harmless: they share the binlog position and carry the same values.

    Without a primary key a row is identified by all its values: an update appears as a new row
    (the old version stays unless a delete of it was captured) and identical rows collapse.
    """
    if changes.width == 0:
        return pl.DataFrame(schema=_EMPTY_PROVENANCE_SCHEMA)
    missing = [c for c in (OP, *CHANGE_ORDER) if c not in changes.columns]
    if missing:
        raise FinalError(f"bronze changes lack provenance column(s) {missing}")
    columns = table_columns(changes)
    key = list(primary_key) or columns
    absent = [c for c in key if c not in changes.columns]
    if absent:
        raise FinalError(f"primary key column(s) {absent} are not in bronze columns {columns}")
    if not key:
        raise FinalError("bronze changes carry no table columns")
    keep = [*columns, *SILVER_PROVENANCE]
    return (
        changes.lazy()
        .filter(pl.col(OP) != TOMBSTONE)
        .sort(list(CHANGE_ORDER), nulls_last=False, maintain_order=True)
        .unique(subset=key, keep="last", maintain_order=True)
        .filter(pl.col(OP) != DELETE)
        .select([c for c in keep if c in changes.columns])
        .sort(key, nulls_last=False)
        .collect()
    )


DELETED = "_deleted"
MERGE_PROVENANCE = (SOURCE_FILE, SOURCE_POS, SOURCE_ROW, OFFSET, SOURCE_TS_MS, OP)


def latest_changes(changes: pl.DataFrame, primary_key: list[str]) -> pl.DataFrame:
    """The newest change of every key in `changes`, deletes kept as tombstone rows.

    What a silver MERGE takes: table columns, the change's source position (``CHANGE_ORDER``),
    commit time, op and ``_deleted``. A deleted key keeps its key columns and position; its
    other columns are nulled (a deleted row's values are not kept in silver). Tombstones
    (``t``) carry no change and are dropped; re-sent duplicates collapse into one.
    """
    missing = [c for c in (OP, *CHANGE_ORDER) if c not in changes.columns]
    if missing:
        raise FinalError(f"bronze changes lack provenance column(s) {missing}")
    columns = table_columns(changes)
    if not columns:
        raise FinalError("bronze changes carry no table columns")
    key = list(primary_key) or columns
    absent = [c for c in key if c not in changes.columns]
    if absent:
        raise FinalError(f"primary key column(s) {absent} are not in bronze columns {columns}")
    deleted = pl.col(OP) == DELETE
    provenance = [c for c in MERGE_PROVENANCE if c in changes.columns]
    return (
        changes.lazy()
        .filter(pl.col(OP) != TOMBSTONE)
        .sort(list(CHANGE_ORDER), nulls_last=False, maintain_order=True)
        .unique(subset=key, keep="last", maintain_order=True)
        .select(
            *[
                pl.col(c)
                if c in key or not primary_key
                else pl.when(deleted).then(None).otherwise(pl.col(c)).alias(c)
                for c in columns
            ],
            *provenance,
            deleted.alias(DELETED),
        )
        .sort(key, nulls_last=False)
        .collect()
    )

"""From bronze changes to the current state of a table (pure polars, no Dagster)."""

from __future__ import annotations

import polars as pl

from binlake.bronze.layout import (
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
from binlake.silver.consumed import TruncatedAt
from cdc.envelope import LEGACY_TOMBSTONE, TOMBSTONE, TRUNCATE

DELETE = "d"


# -- which bronze rows carry no row change -----------------------------------------------------
#
# The rule every reader of bronze's `_op` follows: a TRUNCATE ("t") always has its binlog file
# and position; a Kafka tombstone has none. Tombstones are "x" since TRUNCATE is captured;
# bronze files written before then marked them "t" (when TRUNCATE was never captured), so a
# "t" without a position is such an old tombstone, never a TRUNCATE.


def _has_position() -> pl.Expr:
    return pl.col(SOURCE_FILE).is_not_null() & pl.col(SOURCE_POS).is_not_null()


def is_truncate() -> pl.Expr:
    """Bronze rows that are a TRUNCATE TABLE (see the rule above)."""
    return (pl.col(OP) == TRUNCATE) & _has_position()


def is_tombstone() -> pl.Expr:
    """Bronze rows that are Kafka tombstones, new ("x") or old ("t" without a position)."""
    return (pl.col(OP) == TOMBSTONE) | ((pl.col(OP) == LEGACY_TOMBSTONE) & ~_has_position())


def is_row_change() -> pl.Expr:
    """Bronze rows that change one row (c, u, d, r): neither tombstones nor TRUNCATEs."""
    return ~(pl.col(OP).is_in([TOMBSTONE, TRUNCATE]))


def newest_truncate(changes: pl.DataFrame) -> TruncatedAt | None:
    """The last TRUNCATE of `changes` in change order, or None."""
    if OP not in changes.columns:
        return None
    truncates = changes.filter(is_truncate())
    if not truncates.height:
        return None
    last = truncates.sort(list(CHANGE_ORDER), nulls_last=False).row(-1, named=True)
    return TruncatedAt(
        file=last[SOURCE_FILE],
        pos=int(last[SOURCE_POS]),
        row=int(last[SOURCE_ROW] or 0),
        offset=int(last[OFFSET]),
        ts_ms=int(last[SOURCE_TS_MS]),
    )


def before(position: TruncatedAt) -> pl.Expr:
    """Rows whose change comes before `position` in ``CHANGE_ORDER`` (nulls first, as the
    silver MERGE orders them)."""
    parts = [
        (SOURCE_FILE, "", position.file),
        (SOURCE_POS, -1, position.pos),
        (SOURCE_ROW, -1, position.row),
        (OFFSET, -1, position.offset),
    ]
    earlier = pl.lit(False)
    for column, null_as, value in reversed(parts):
        mine = pl.col(column).fill_null(null_as)
        earlier = (mine < value) | ((mine == value) & earlier)
    return earlier


def after_truncate(changes: pl.DataFrame, truncated_at: TruncatedAt | None) -> pl.DataFrame:
    """`changes` without the row changes a TRUNCATE at `truncated_at` wiped out."""
    if truncated_at is None or not changes.height:
        return changes
    return changes.filter(~before(truncated_at))


def table_columns(changes: pl.DataFrame) -> list[str]:
    """The source table's own columns, in bronze order."""
    return [c for c in changes.columns if c not in PROVENANCE_COLUMNS]


DELETED = "_deleted"
MERGE_PROVENANCE = (SOURCE_FILE, SOURCE_POS, SOURCE_ROW, OFFSET, SOURCE_TS_MS, OP)


def latest_changes(
    changes: pl.DataFrame, primary_key: list[str], truncated_at: TruncatedAt | None = None
) -> pl.DataFrame:
    """The newest change of every key in `changes`, deletes kept as tombstone rows.

    What a silver MERGE takes: table columns, the change's source position (``CHANGE_ORDER``),
    commit time, op and ``_deleted``. A deleted key keeps its key columns and position; its
    other columns are nulled (a deleted row's values are not kept in silver). Tombstones and
    TRUNCATEs carry no row change and are dropped, and so is every change before
    `truncated_at` (the newest TRUNCATE known, in `changes` or merged earlier); the MERGE
    empties the stored table up to it. Re-sent duplicates collapse into one.
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
        after_truncate(changes, truncated_at)
        .lazy()
        .filter(is_row_change())
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

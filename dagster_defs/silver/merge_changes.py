"""One step shared by the silver asset and point-in-time rebuilds: bronze changes into a table.

The newest change per key wins, personal data is masked, and the result is merged into the
Delta table in one commit that also records the offsets it now holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from dagster_defs.silver.consumed import ConsumedOffsets
from dagster_defs.silver.delta_table import MergeStats, SilverDeltaTable
from dagster_defs.silver.logic import latest_changes, newest_truncate, table_columns
from dagster_defs.silver.pii import PiiPolicy


@dataclass(frozen=True)
class MergedChanges:
    stats: MergeStats
    masked_columns: list[str]


def merge_changes(
    target: SilverDeltaTable,
    table: str,
    changes: pl.DataFrame,
    primary_key: list[str],
    consumed: ConsumedOffsets,
    pii: PiiPolicy,
) -> MergedChanges:
    """Merge the bronze rows `changes` of `table`; `consumed` gains their offsets first.

    A TRUNCATE among them newer than the one `consumed` records empties the table up to it in
    the same commit; every change before the newest TRUNCATE known is left out (see
    ``TruncatedAt``), so a late re-sent change cannot bring a truncated row back.
    """
    consumed.add_offsets(changes)
    new_truncate = consumed.truncate_at(newest_truncate(changes))
    columns = table_columns(changes)
    latest = pii.mask(
        latest_changes(changes, primary_key, consumed.truncated_at), table, columns, primary_key
    )
    stats = target.merge(
        latest,
        primary_key or columns,
        consumed,
        nullable_key=not primary_key,
        truncate=consumed.truncated_at if new_truncate else None,
    )
    return MergedChanges(stats, pii.masked_columns(table, columns))

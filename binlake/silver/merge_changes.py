"""One step of every silver writer: bronze changes into a silver Delta table.

Current state (the silver asset and point-in-time rebuilds, `merge_changes`): the newest change
per key wins, personal data is masked, and the result is merged into the Delta table in one
commit that also records the offsets it now holds. History (`append_history_changes`): every
change becomes a version row, masked alike, appended in one commit with its offsets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from binlake.bronze.manifest import ManifestEntry
from binlake.silver.consumed import ConsumedOffsets
from binlake.silver.delta_table import SCHEMA_VERSION_KEY, MergeStats, SilverDeltaTable
from binlake.silver.history import HistoryStats, SilverHistoryTable, change_rows
from binlake.silver.logic import latest_changes, newest_truncate, table_columns
from binlake.silver.pii import PiiPolicy


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
    column_defaults: Mapping[str, Any] | None = None,
    schema_version: int = 0,
    replace_incompatible: bool = False,
    entries: Sequence[ManifestEntry] = (),
) -> MergedChanges:
    """Merge the bronze rows `changes` of `table`; `consumed` gains their offsets first.

    A TRUNCATE among them newer than the one `consumed` records empties the table up to it in
    the same commit; every change before the newest TRUNCATE known is left out (see
    ``TruncatedAt``), so a late re-sent change cannot bring a truncated row back.

    `schema_version` (the newest bronze schema version of the files read) is recorded in the
    commit, so the next run knows which schema steps it has checked already.

    `column_defaults` (`BronzeRead.column_defaults`) fill a column new to silver in the rows
    silver held before it (see `SilverDeltaTable.merge`). `replace_incompatible`: the changes
    passed the check that a resync healed every breaking schema step in them, so a column whose
    type changed beyond widening is replaced (the resync's rows carry every live row's value).
    """
    consumed.add_offsets(changes)
    consumed.add_entries(entries)  # the files whose rows these are, markers and all
    new_truncate = consumed.truncate_at(newest_truncate(changes))
    columns = table_columns(changes)
    latest = pii.mask(
        latest_changes(changes, primary_key, consumed.truncated_at), table, columns, primary_key
    )
    if column_defaults and pii.masked_columns(table, list(column_defaults)):
        # A personal-data column's default is masked like its values (a digest, or null).
        defaults = pl.DataFrame(
            [pl.Series(n, [v], dtype=changes.schema[n]) for n, v in column_defaults.items()]
        )
        column_defaults = pii.mask(defaults, table, defaults.columns, []).row(0, named=True)
    stats = target.merge(
        latest,
        primary_key or columns,
        consumed,
        nullable_key=not primary_key,
        truncate=consumed.truncated_at if new_truncate else None,
        column_defaults=column_defaults,
        replace_incompatible=replace_incompatible,
        extra_metadata={SCHEMA_VERSION_KEY: str(schema_version)} if schema_version else None,
    )
    return MergedChanges(stats, pii.masked_columns(table, columns))


@dataclass(frozen=True)
class AppendedChanges:
    stats: HistoryStats
    masked_columns: list[str]


def append_history_changes(
    target: SilverHistoryTable,
    table: str,
    changes: pl.DataFrame,
    primary_key: list[str],
    consumed: ConsumedOffsets,
    pii: PiiPolicy,
    entries: Sequence[ManifestEntry] = (),
) -> AppendedChanges:
    """Append the bronze rows `changes` of `table` to its history; `consumed` gains their
    offsets and files first."""
    consumed.add_offsets(changes)
    consumed.add_entries(entries)
    columns = table_columns(changes)
    rows = pii.mask(change_rows(changes, primary_key), table, columns, primary_key)
    stats = target.append(rows, primary_key or columns, consumed, nullable_key=not primary_key)
    return AppendedChanges(stats, pii.masked_columns(table, columns))

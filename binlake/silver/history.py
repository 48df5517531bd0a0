"""SCD type 2 history of a silver table: every version of every row, with when it was valid.

Optional per table (``silver.history_tables``), built from the same bronze changes as the
current state, stored as its own Delta table (``SilverLake.history``, next to the current-state
table as ``<lake>/silver/<db>/<table>__history``). One row per change (``c``, ``u``, ``r``,
``d``; Kafka tombstones ``t`` carry no change and are skipped): the table's columns, personal
data masked like the current state, then

* ``valid_from``: when the version became valid, the source commit time (``_source_ts_ms``) as a
  UTC timestamp. Versions of a key are ordered by binlog position (``_source_file``,
  ``_source_pos``, ``_source_row``, then the Kafka ``_offset`` for changes of one event), never by
  arrival or by time. ``_source_ts_ms`` is when the *statement* started, so a transaction that
  started earlier can commit (and sit in the binlog) after a later one: ``valid_from`` is then
  raised to the previous version's, so the intervals of one key never overlap. The raw time stays
  in ``_source_ts_ms``.
* ``valid_to``: the next version's ``valid_from``; null while the version is current.
* ``op``: the change (``c`` insert, ``u`` update, ``r`` snapshot read, ``d`` delete).
* ``is_current``: true for the one version of a key that holds now (``valid_to`` is null).
* ``_source_ts_ms``, ``_source_file``, ``_source_pos``, ``_source_row``, ``_offset``: the
  change's commit time and position, the identity of a version.

**Deletes.** A delete closes the version before it (its ``valid_to`` is the delete's
``valid_from``) and is itself a row with ``op = 'd'`` and a *zero-length* validity
(``valid_to = valid_from``, ``is_current`` false): it records when the key disappeared, and no
point in time falls inside it. Its non-key columns are null (as in the current state, a deleted
row's values are not kept; they are in the version the delete closed). A key inserted again
after a delete starts a new run of versions. So, for every key, ``is_current`` is exactly
``valid_to IS NULL``, and the table as of time ``T`` is
``valid_from <= T AND (valid_to IS NULL OR T < valid_to)``, deletes included without a filter.

**Updates.** Each run reads the bronze changes the history has not consumed (its own
``ConsumedOffsets`` in its own Delta commit metadata, as the current state does), reads the
stored versions of the keys those changes touch (filtered by key, so the cost follows the
touched keys, not the table), unions them with the new changes, and recomputes
``valid_from``/``valid_to``/``is_current`` of those keys. It then MERGEs, on key + position,
only the rows that are new or whose validity changed: the new versions are inserted, the
previously current version of each touched key is closed. A late change (older binlog
position than a stored version, e.g. a replayed bronze range) is so placed in order and the
validity of its neighbours fixed. A change sent twice (Debezium re-sends after a crash, at a
new Kafka offset) is recognised by the same key, binlog file, position, row, op and values and
kept once (the copy stored first wins); two changes of one event that share a position differ
by their values and both stay (identical ones would be indistinguishable versions and collapse).
Rows and consumed offsets land in one atomic Delta commit; a
run that brings nothing new (only duplicates or tombstones) commits nothing.

Known limits: a table column named ``valid_from``, ``valid_to``, ``op`` or ``is_current`` is
refused. The stored versions of the touched keys are found by the key columns' values for
integer and string columns; with other key types (and for tables without a primary key, keyed by
all their columns) more stored rows are read than needed, which is correct but slower. Changing
the PII settings does not re-mask versions already stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, write_deltalake

from binlake.bronze.layout import (
    CHANGE_ORDER,
    OFFSET,
    OP,
    SOURCE_FILE,
    SOURCE_POS,
    SOURCE_ROW,
    SOURCE_TS_MS,
)
from binlake.errors import FinalError
from binlake.silver.consumed import COMMIT_METADATA_KEY, ConsumedOffsets, TruncatedAt
from binlake.silver.delta_table import (
    _SOURCE,
    _TARGET,
    SilverDeltaTable,
    delta_compatible,
    key_range_predicate,
)
from binlake.silver.logic import DELETE, before, is_tombstone, table_columns
from cdc.envelope import TRUNCATE

VALID_FROM = "valid_from"
VALID_TO = "valid_to"
HISTORY_OP = "op"
IS_CURRENT = "is_current"
# A version's place among the versions of its key (and, with the key, its identity).
POSITION = CHANGE_ORDER
# Stored after the table's own columns, in this order.
HISTORY_COLUMNS = (VALID_FROM, VALID_TO, HISTORY_OP, IS_CURRENT, SOURCE_TS_MS, *POSITION)
# Recomputed for every touched key on each run.
VALIDITY = (VALID_FROM, VALID_TO, IS_CURRENT)
RESERVED = (VALID_FROM, VALID_TO, HISTORY_OP, IS_CURRENT)

# Versions that end their key: a delete, or a TRUNCATE of the table (zero-length validity).
ENDS = (DELETE, TRUNCATE)

_NEW = "__binlake_new"
_OLD = "__binlake_old_"


def change_rows(changes: pl.DataFrame, primary_key: list[str]) -> pl.DataFrame:
    """One history row per change of `changes` (bronze rows), without validity yet.

    Table columns (a delete's non-key columns nulled), ``op``, ``_source_ts_ms`` and the
    position; tombstones dropped. A TRUNCATE stays as one row with op ``t`` and every table
    column null: ``SilverHistoryTable.append`` turns it into a version closing each key.
    Duplicates are kept here: ``merge_versions`` drops them.
    """
    missing = [c for c in (OP, SOURCE_TS_MS, *POSITION) if c not in changes.columns]
    if missing:
        raise FinalError(f"bronze changes lack provenance column(s) {missing}")
    columns = table_columns(changes)
    if not columns:
        raise FinalError("bronze changes carry no table columns")
    clash = [c for c in columns if c in RESERVED]
    if clash:
        raise FinalError(
            f"table column(s) {clash} clash with the history table's own columns {RESERVED}"
        )
    absent = [c for c in primary_key if c not in columns]
    if absent:
        raise FinalError(f"primary key column(s) {absent} are not in bronze columns {columns}")
    deleted = pl.col(OP) == DELETE
    return (
        changes.lazy()
        .filter(~is_tombstone())
        .select(
            *[
                pl.col(c)
                if c in primary_key or not primary_key
                else pl.when(deleted).then(None).otherwise(pl.col(c)).alias(c)
                for c in columns
            ],
            pl.col(OP).alias(HISTORY_OP),
            SOURCE_TS_MS,
            *POSITION,
        )
        .collect()
    )


def with_validity(versions: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    """`versions` (all versions of their keys) with ``valid_from``, ``valid_to``, ``is_current``.

    Sorted by key, then position. See the module docstring for the rules.
    """
    started = (
        pl.from_epoch(pl.col(SOURCE_TS_MS), time_unit="ms")
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC")
    )
    return (
        versions.sort(list(POSITION), nulls_last=False, maintain_order=True)
        .with_columns(started.cum_max().over(key).alias(VALID_FROM))
        .with_columns(
            pl.when(pl.col(HISTORY_OP).is_in(ENDS))
            .then(pl.col(VALID_FROM))
            .otherwise(pl.col(VALID_FROM).shift(-1).over(key))
            .alias(VALID_TO)
        )
        .with_columns(pl.col(VALID_TO).is_null().alias(IS_CURRENT))
        .sort([*key, *POSITION], nulls_last=False, maintain_order=True)
    )


@dataclass(frozen=True)
class VersionsToWrite:
    rows: pl.DataFrame  # table columns then HISTORY_COLUMNS
    inserted: int  # new versions
    updated: int  # stored versions whose validity changed


def merge_versions(
    stored: pl.DataFrame | None, new: pl.DataFrame, key: list[str]
) -> VersionsToWrite:
    """The rows to MERGE: new versions and stored versions whose validity changed.

    `stored` holds (at least) every stored version of the keys `new` touches, `new` the
    ``change_rows`` of a run. Versions of keys `new` does not touch come out unchanged, so
    `stored` may hold more than needed.
    """
    fresh = new.drop([c for c in VALIDITY if c in new.columns]).with_columns(
        pl.lit(True).alias(_NEW)
    )
    if stored is None:
        both = fresh
    else:
        old = stored.rename({c: _OLD + c for c in VALIDITY}).with_columns(pl.lit(False).alias(_NEW))
        both = pl.concat([old, fresh], how="diagonal_relaxed")
    both = both.with_columns(
        pl.lit(None, dtype=dtype).alias(_OLD + c)
        for c, dtype in (
            (VALID_FROM, pl.Datetime("us", "UTC")),
            (VALID_TO, pl.Datetime("us", "UTC")),
            (IS_CURRENT, pl.Boolean),
        )
        if _OLD + c not in both.columns
    )
    helpers = {_NEW, *(_OLD + c for c in VALIDITY)}
    own = [c for c in both.columns if c not in helpers and c not in HISTORY_COLUMNS]
    # One change sent twice: same key, position, op and values (the Kafka offset differs).
    identity = [*own, HISTORY_OP, SOURCE_FILE, SOURCE_POS, SOURCE_ROW]
    unique = both.sort([_NEW, OFFSET], nulls_last=False, maintain_order=True).unique(
        subset=identity, keep="first", maintain_order=True
    )
    versions = with_validity(unique, key)
    changed = pl.col(_NEW) | pl.any_horizontal(
        pl.col(c).ne_missing(pl.col(_OLD + c)) for c in VALIDITY
    )
    rows = versions.filter(changed)
    inserted = int(rows.get_column(_NEW).sum())
    return VersionsToWrite(
        rows=rows.select(*own, *HISTORY_COLUMNS),
        inserted=inserted,
        updated=rows.height - inserted,
    )


# -- TRUNCATE ------------------------------------------------------------------------------------


def truncate_markers(new: pl.DataFrame) -> list[TruncatedAt]:
    """The TRUNCATEs among ``change_rows`` (op ``t``), in change order."""
    markers = new.filter(pl.col(HISTORY_OP) == TRUNCATE).sort(list(POSITION), nulls_last=False)
    return [
        TruncatedAt(
            r[SOURCE_FILE],
            int(r[SOURCE_POS]),
            int(r[SOURCE_ROW] or 0),
            int(r[OFFSET]),
            int(r[SOURCE_TS_MS]),
        )
        for r in markers.iter_rows(named=True)
    ]


def truncate_versions(
    versions: pl.DataFrame, key: list[str], position: TruncatedAt
) -> pl.DataFrame:
    """One version with op ``t`` at `position` for every key whose latest version before it is
    live: the TRUNCATE closes it, like a delete (key kept, other columns null).

    `versions` holds versions of keys (``change_rows`` shape, validity columns ignored); the
    result has the columns of ``change_rows``.
    """
    shape = [c for c in versions.columns if c not in VALIDITY and c not in (_NEW,)]
    own = [c for c in shape if c not in HISTORY_COLUMNS]
    latest = (
        versions.filter(before(position))
        .sort(list(POSITION), nulls_last=False, maintain_order=True)
        .unique(subset=key, keep="last", maintain_order=True)
        .filter(~pl.col(HISTORY_OP).is_in(ENDS))
    )
    schema = versions.schema
    values = {
        HISTORY_OP: TRUNCATE,
        SOURCE_TS_MS: position.ts_ms,
        SOURCE_FILE: position.file,
        SOURCE_POS: position.pos,
        SOURCE_ROW: position.row,
        OFFSET: position.offset,
    }
    return latest.select(
        *[pl.col(c) if c in key else pl.lit(None, dtype=schema[c]).alias(c) for c in own],
        *[pl.lit(values[c], dtype=schema[c]).alias(c) for c in shape if c in values],
    ).select(shape)


def with_truncates(
    stored: pl.DataFrame | None,
    new: pl.DataFrame,
    key: list[str],
    truncates: list[TruncatedAt],
) -> pl.DataFrame:
    """`new` without its TRUNCATE markers, plus a closing version per key for each of
    `truncates` (in order, each seeing the versions the earlier ones added)."""
    changes = new.filter(pl.col(HISTORY_OP) != TRUNCATE)
    if not truncates:
        return changes
    known = (
        changes
        if stored is None
        else pl.concat([stored.drop(VALIDITY, strict=False), changes], how="diagonal_relaxed")
    )
    added: list[pl.DataFrame] = []
    for position in truncates:
        closing = truncate_versions(known, key, position)
        added.append(closing)
        known = pl.concat([known, closing], how="diagonal_relaxed")
    return pl.concat([changes, *added], how="diagonal_relaxed")


def _touched_keys_filter(schema: pa.Schema, new: pl.DataFrame, key: list[str]) -> pc.Expression:
    """A filter on stored rows keeping at least every version of the keys in `new`.

    Exact for one integer or string key column; a superset otherwise (composite keys match per
    column; columns of other types, or new ones, are not filtered on).
    """
    condition: pc.Expression | None = None
    for column in key:
        if column not in schema.names:
            continue
        stored_type = schema.field(column).type
        if not (
            pa.types.is_integer(stored_type)
            or pa.types.is_string(stored_type)
            or pa.types.is_large_string(stored_type)
            or pa.types.is_string_view(stored_type)
        ):
            continue
        series = new.get_column(column)
        values = series.drop_nulls().unique().to_arrow(compat_level=pl.CompatLevel.oldest())
        try:
            value_set = values.cast(stored_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue  # e.g. a value out of the stored range: not filtering is still correct
        expression = pc.field(column).isin(value_set)
        if series.null_count():
            expression = expression | pc.field(column).is_null()
        condition = expression if condition is None else condition & expression
    return pc.scalar(True) if condition is None else condition


@dataclass(frozen=True)
class HistoryStats:
    version: int | None  # the table's version after the run (None: no table yet)
    changes: int  # change rows given (duplicates included)
    inserted: int
    updated: int
    committed: bool


class SilverHistoryTable:
    """The SCD type 2 history Delta table of one silver table at `uri`."""

    def __init__(self, uri: str, storage_options: dict[str, str] | None = None):
        self.uri = uri
        self.storage_options = storage_options
        # Opening, consumed offsets and schema alignment are the current state's.
        self._delta = SilverDeltaTable(uri, storage_options)

    def exists(self) -> bool:
        return self._delta.exists()

    def version(self) -> int | None:
        return self._delta.version()

    def consumed(self, version: int | None = None) -> ConsumedOffsets:
        """Offsets written into the history as of `version` (latest when None)."""
        return self._delta.consumed(version)

    def read_all(self, version: int | None = None) -> pl.DataFrame:
        """Every version of every key; FileNotFoundError before the first write."""
        return self._delta.read_all(version)

    def read_current(self, version: int | None = None) -> pl.DataFrame:
        """The current version of every key (no deleted keys); empty before the first write."""
        table = self._delta._open(version)
        if table is None:
            return pl.DataFrame()
        frame = pl.from_arrow(table.to_pyarrow_table(filters=[(IS_CURRENT, "=", True)]))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def counts(self) -> tuple[int, int]:
        """(versions, current versions) stored; reads one column."""
        table = self._delta._open()
        if table is None:
            return 0, 0
        current = table.to_pyarrow_table(columns=[IS_CURRENT])[IS_CURRENT]
        return len(current), int(pc.sum(current).as_py() or 0)

    def newest_source_ts_ms(self) -> int | None:
        return self._delta.newest_source_ts_ms()

    def append(
        self,
        changes: pl.DataFrame,
        key: list[str],
        consumed: ConsumedOffsets,
        *,
        nullable_key: bool = False,
    ) -> HistoryStats:
        """Add `changes` (``change_rows``, masked) as versions and fix their keys' validity.

        `consumed` (the offsets held once this commit is in) goes into the same commit.
        """
        new = _as_stored(changes)
        table = self._delta._open()
        # A TRUNCATE closes every key current before it: all stored versions are read. A TRUNCATE
        # merged earlier (kept in `consumed`) also closes the keys of late changes before it.
        markers = truncate_markers(new)
        known = consumed.truncated_at
        newest = markers[-1] if markers else None
        all_keys = consumed.truncate_at(newest)
        truncates = sorted(
            {*markers, *([known] if known is not None else [])}, key=lambda p: p.order
        )
        changes_only = new.filter(pl.col(HISTORY_OP) != TRUNCATE)
        stored = None
        if table is not None:
            stored = (
                _all_versions(table) if all_keys else _stored_versions(table, changes_only, key)
            )
        new = with_truncates(stored, new, key, truncates)
        properties = CommitProperties(custom_metadata={COMMIT_METADATA_KEY: consumed.to_json()})
        plan = merge_versions(stored, new, key)
        if plan.rows.height == 0:
            return HistoryStats(self.version(), new.height, 0, 0, committed=False)
        source = delta_compatible(plan.rows.to_arrow(compat_level=pl.CompatLevel.oldest()))
        if table is None:
            if self._delta._is_local:
                Path(self.uri).mkdir(parents=True, exist_ok=True)
            write_deltalake(
                self.uri,
                source,
                mode="error",
                storage_options=self.storage_options,
                commit_properties=properties,
            )
            return HistoryStats(0, new.height, plan.inserted, plan.updated, committed=True)
        source, rewritten = self._delta._align_schemas(table, source)
        if rewritten:
            table = self._delta._open()
            assert table is not None
        predicate = " AND ".join(
            [
                *(_same(c, nullable=nullable_key) for c in key),
                *(_same(c, nullable=True) for c in POSITION),
                *([bounds] if (bounds := key_range_predicate(plan.rows, key)) else []),
            ]
        )
        (
            table.merge(
                source,
                predicate=predicate,
                source_alias=_SOURCE,
                target_alias=_TARGET,
                merge_schema=True,
                commit_properties=properties,
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
        return HistoryStats(
            table.version(), new.height, plan.inserted, plan.updated, committed=True
        )


def _same(column: str, *, nullable: bool) -> str:
    """SQL: source and target agree on `column` (parenthesised: the SQL parser reads
    ``a IS NOT DISTINCT FROM b AND c`` as ``a IS NOT DISTINCT FROM (b AND c)``)."""
    op = "IS NOT DISTINCT FROM" if nullable else "="
    return f'({_TARGET}."{column}" {op} {_SOURCE}."{column}")'


def _as_stored(changes: pl.DataFrame) -> pl.DataFrame:
    """`changes` with the types Delta stores (as the stored versions are read back)."""
    arrow = delta_compatible(changes.to_arrow(compat_level=pl.CompatLevel.oldest()))
    frame = pl.from_arrow(arrow)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _all_versions(table: DeltaTable) -> pl.DataFrame:
    frame = pl.from_arrow(table.to_pyarrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def _stored_versions(table: DeltaTable, new: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    """Every stored version of the keys in `new` (and possibly of some other keys)."""
    schema = pa.schema(table.schema().to_arrow())
    stored = table.to_pyarrow_table(filters=_touched_keys_filter(schema, new, key))
    frame = pl.from_arrow(stored)
    assert isinstance(frame, pl.DataFrame)
    return frame

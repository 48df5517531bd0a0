"""One silver table stored as a Delta Lake table and updated by MERGE.

The table holds, per key, the newest change merged so far: the row's columns plus where the
change came from (binlog file, position, row, Kafka offset, commit time, op). A deleted key stays
as a *tombstone row* (``_deleted`` true, non-key columns null): a change older than the delete
that arrives later (a Debezium re-send after a crash, a replayed bronze range) must not bring
the row back, and only the tombstone's source position can tell that it is older. Readers see
the current state through ``read_current``, which leaves tombstones out.

MERGE rule, per key: a change replaces the stored version only if it is newer by source position
(file, position, row, then Kafka offset), so merging the same changes twice, or in any order,
gives the same table. Each commit carries the consumed bronze offsets
(``binlake.silver.consumed``) in its commit metadata; Delta time travel (``version=``)
serves the table and its offsets as of any earlier commit.

Every table is written with Delta's change data feed on: ``changes_since`` gives the rows a
version range changed, before and after images included, which is how gold learns which of its
hourly partitions a silver update touched without scanning the table.

Delta has no TIME, unsigned or 256-bit decimal type: TIME columns (durations) are stored as
int64 microseconds, timestamps as microseconds, and DECIMAL(p > 38) as exact decimal strings
(bronze's readers already give them as strings).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, write_deltalake

from binlake.bronze.layout import OFFSET, OP, SOURCE_FILE, SOURCE_POS, SOURCE_ROW, SOURCE_TS_MS
from binlake.bronze.schema_drift import common_type
from binlake.delta_table_base import DeltaTableBase
from binlake.errors import FinalError
from binlake.silver.consumed import COMMIT_METADATA_KEY, ConsumedOffsets, TruncatedAt

DELETED = "_deleted"
# Stored next to the table's own columns, in this order.
STORED_PROVENANCE = (SOURCE_FILE, SOURCE_POS, SOURCE_ROW, OFFSET, SOURCE_TS_MS, OP, DELETED)
# Provenance readers of the current state get (the rest is for merging and auditing).
CURRENT_PROVENANCE = (SOURCE_TS_MS, OFFSET, OP)
# Commit metadata of a merge: the newest bronze schema version among the files it merged.
SCHEMA_VERSION_KEY = "binlake.schema_version"
# Commits searched (newest first) for the consumed-offsets metadata.
HISTORY_SEARCH_LIMIT = 200
_FEED_PROPERTY = "delta.enableChangeDataFeed"
CHANGE_DATA_FEED = {_FEED_PROPERTY: "true"}
# Columns the change data feed adds to each changed row.
CHANGE_TYPE = "_change_type"  # insert, update_preimage, update_postimage, delete
CHANGE_VERSION = "_commit_version"

_SOURCE, _TARGET = "s", "t"
TRUNCATE_OP = "t"  # the op of a row a TRUNCATE turned into a tombstone (Debezium's letter)


def _q(alias: str, column: str) -> str:
    return f'{alias}."{column}"'


def _newer_predicate() -> str:
    """SQL: the source change comes after the stored one in (file, pos, row, offset) order."""
    parts = [
        (SOURCE_FILE, "''"),
        (SOURCE_POS, "-1"),
        (SOURCE_ROW, "-1"),
        (OFFSET, "-1"),
    ]
    predicate = ""
    for column, null_as in reversed(parts):
        s = f"coalesce({_q(_SOURCE, column)}, {null_as})"
        t = f"coalesce({_q(_TARGET, column)}, {null_as})"
        predicate = f"{s} > {t}" if not predicate else f"({s} > {t} OR ({s} = {t} AND {predicate}))"
    return predicate


NEWER_PREDICATE = _newer_predicate()


def _sql_literal(value: str | int) -> str:
    return _sql_str(value) if isinstance(value, str) else str(int(value))


def before_sql(alias: str, position: TruncatedAt) -> str:
    """SQL: the stored change of `alias` comes before `position` in (file, pos, row, offset)
    order, nulls first like ``NEWER_PREDICATE``."""
    parts = [
        (SOURCE_FILE, "''", position.file),
        (SOURCE_POS, "-1", position.pos),
        (SOURCE_ROW, "-1", position.row),
        (OFFSET, "-1", position.offset),
    ]
    predicate = ""
    for column, null_as, value in reversed(parts):
        mine, theirs = f"coalesce({_q(alias, column)}, {null_as})", _sql_literal(value)
        predicate = (
            f"{mine} < {theirs}"
            if not predicate
            else f"({mine} < {theirs} OR ({mine} = {theirs} AND {predicate}))"
        )
    return predicate


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def truncated_updates(
    columns: list[str], key: list[str], position: TruncatedAt, *, keep_values: bool
) -> dict[str, str]:
    """SET clause turning a stored row into a tombstone of the TRUNCATE at `position`.

    Like a delete's tombstone, it keeps the key (every column for a table without a primary
    key, `keep_values`) so that a late older change of the key stays out, with the TRUNCATE's
    position and op "t".
    """
    updates = {
        _quoted(c): "NULL"
        for c in columns
        if not keep_values and c not in key and c not in STORED_PROVENANCE
    }
    updates.update(
        {
            _quoted(SOURCE_FILE): _sql_str(position.file),
            _quoted(SOURCE_POS): str(position.pos),
            _quoted(SOURCE_ROW): str(position.row),
            _quoted(OFFSET): str(position.offset),
            _quoted(SOURCE_TS_MS): str(position.ts_ms),
            _quoted(OP): _sql_str(TRUNCATE_OP),
            _quoted(DELETED): "true",
        }
    )
    return updates


def key_predicate(key: list[str], *, nullable: bool) -> str:
    """SQL joining source and target rows of one key (null-safe for keys that may be null)."""
    op = "IS NOT DISTINCT FROM" if nullable else "="
    # Each term in parentheses: delta-rs parses `a IS NOT DISTINCT FROM b AND c ...` as
    # `a IS NOT DISTINCT FROM (b AND c) ...`.
    return " AND ".join(f"({_q(_TARGET, c)} {op} {_q(_SOURCE, c)})" for c in key)


def _sql_str(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def key_range_predicate(latest: pl.DataFrame, key: list[str]) -> str:
    """SQL bounding the target's key columns to the range the changes touch.

    Conjuncts on target columns alone let delta-rs skip stored files by their min/max
    statistics, so a batch of recent keys reads and rewrites only the files that hold recent
    keys, whatever the size of the table. Integer and string key columns get a range; others
    (and keys with nulls) none.
    """
    bounds: list[str] = []
    for column in key:
        series = latest.get_column(column)
        if series.null_count() or series.len() == 0:
            continue
        low, high = series.min(), series.max()
        if series.dtype.is_integer():
            bounds.append(f"{_q(_TARGET, column)} BETWEEN {int(low)} AND {int(high)}")  # type: ignore[arg-type]
        elif series.dtype == pl.String:
            bounds.append(f"{_q(_TARGET, column)} BETWEEN {_sql_str(low)} AND {_sql_str(high)}")
    return " AND ".join(bounds)


def delta_compatible(table: pa.Table) -> pa.Table:
    """`table` with types Delta cannot store converted (see the module docstring)."""
    for i, column in enumerate(table.schema):
        target: pa.DataType | None = None
        t = column.type
        if pa.types.is_duration(t):
            target = pa.int64()
        elif pa.types.is_timestamp(t) and t.unit != "us":
            target = pa.timestamp("us", tz=t.tz)
        elif pa.types.is_decimal256(t):
            target = pa.large_string()
        elif pa.types.is_uint64(t):
            target = pa.decimal128(20, 0)
        elif pa.types.is_unsigned_integer(t):
            target = pa.int64()
        if target is not None:
            values = table.column(i)
            if pa.types.is_duration(t):
                values = values.cast(pa.duration("us")).cast(pa.int64())
            else:
                values = values.cast(target)
            table = table.set_column(i, column.with_type(target), values)
    return table


def _delta_values(latest: pl.DataFrame, values: Mapping[str, Any]) -> dict[str, pa.Scalar]:
    """`values` of columns of `latest` as the merge stores them (through `delta_compatible`)."""
    present = {name: value for name, value in values.items() if name in latest.columns}
    if not present:
        return {}
    one = pl.DataFrame(
        [pl.Series(name, [value], dtype=latest.schema[name]) for name, value in present.items()]
    )
    arrow = delta_compatible(one.to_arrow(compat_level=pl.CompatLevel.oldest()))
    return {name: arrow.column(name)[0] for name in arrow.column_names}


def _feeds_changes(table: DeltaTable) -> bool:
    return table.metadata().configuration.get(_FEED_PROPERTY) == "true"


def _plain(t: pa.DataType) -> pa.DataType:
    """`t` without Arrow's layout variants (large/view strings and binaries are the same data)."""
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    return t


@dataclass(frozen=True)
class MergeStats:
    version: int
    source_rows: int
    inserted: int
    updated: int
    schema_rewritten: bool


class SilverDeltaTable(DeltaTableBase):
    """The Delta table of one silver table at `uri` (a local path or an object-store URL)."""

    def consumed(self, version: int | None = None) -> ConsumedOffsets:
        """Offsets merged into the table as of `version` (latest when None)."""
        table = self._open()
        if table is None:
            return ConsumedOffsets()
        newest = table.version() if version is None else version
        # From the latest table: delta-rs 1.6 numbers history() wrongly on a time-travelled one.
        for commit in table.history(HISTORY_SEARCH_LIMIT + table.version() - newest):
            if commit["version"] > newest:
                continue
            raw = commit.get(COMMIT_METADATA_KEY)
            if raw is not None:
                return ConsumedOffsets.from_json(raw)
        raise FinalError(
            f"silver table {self.uri}: none of its last {HISTORY_SEARCH_LIMIT} commits records "
            f"the bronze offsets it holds ({COMMIT_METADATA_KEY}); rebuild it from bronze"
        )

    def merged_schema_version(self) -> int | None:
        """The newest bronze schema version merged (`SCHEMA_VERSION_KEY` of the newest merge
        commit that records one); None when unknown (no table, or merged before it was kept)."""
        table = self._open()
        if table is None:
            return None
        for commit in table.history(HISTORY_SEARCH_LIMIT):
            raw = commit.get(SCHEMA_VERSION_KEY)
            if raw is not None:
                return int(raw)
        return None

    def read_current(
        self, version: int | None = None, where: list[tuple[str, str, Any]] | None = None
    ) -> pl.DataFrame:
        """The current state: every live row, table columns then `CURRENT_PROVENANCE`.

        `where` narrows the rows read, as conjunctive ``(column, op, value)`` filters (ops of
        ``DeltaTable.to_pyarrow_table``: ``=``, ``<``, ``>=``, ``in``...); files whose column
        statistics exclude them are skipped.
        """
        table = self._open(version)
        if table is None:  # nothing merged yet: an empty table
            return pl.DataFrame(schema={SOURCE_TS_MS: pl.Int64, OFFSET: pl.Int64, OP: pl.String})
        filters = [(DELETED, "=", False), *(where or [])]
        frame = pl.from_arrow(table.to_pyarrow_table(filters=filters))
        assert isinstance(frame, pl.DataFrame)
        own = [c for c in frame.columns if c not in STORED_PROVENANCE]
        return frame.select(*own, *CURRENT_PROVENANCE)

    def count_live(self) -> int:
        """Rows of the current state (0 before the first merge); reads one column."""
        table = self._open()
        if table is None:
            return 0
        # Polars' own Parquet reader, not `to_pyarrow_table`: a process that read a Delta table
        # through pyarrow's dataset threads sometimes aborted at exit ("terminate called without
        # an active exception", 3 of 10 `binlake rebuild` exits on a busy machine; 0 of 12 so).
        live = pl.scan_delta(
            self.uri, version=table.version(), storage_options=self.storage_options
        ).select((~pl.col(DELETED)).sum())
        return int(live.collect().item() or 0)

    def count_stored(self) -> tuple[int, int]:
        """(live rows, tombstone rows) stored (0, 0 before the first merge); reads one column.
        The live rows are the current state's (`read_current`, `count_live`)."""
        table = self._open()
        if table is None:
            return 0, 0
        counts = pl.scan_delta(
            self.uri, version=table.version(), storage_options=self.storage_options
        ).select((~pl.col(DELETED)).sum().alias("live"), pl.col(DELETED).sum().alias("dead"))
        live, dead = counts.collect().row(0)
        return int(live or 0), int(dead or 0)

    def newest_source_ts_ms(self) -> int | None:
        """Commit time of the newest change merged (deletes included), from the Delta log."""
        table = self._open()
        if table is None:
            return None
        newest = pc.max(table.to_pyarrow_table(columns=[SOURCE_TS_MS])[SOURCE_TS_MS])
        return newest.as_py()

    def read_all(self, version: int | None = None) -> pl.DataFrame:
        """Every stored row, tombstones and merge provenance included (for audits and tests)."""
        table = self._open(version)
        if table is None:
            raise FileNotFoundError(f"silver table {self.uri} does not exist yet")
        frame = pl.from_arrow(table.to_pyarrow_table())
        assert isinstance(frame, pl.DataFrame)
        return frame

    def changes_since(self, version: int | None) -> pl.DataFrame | None:
        """Rows changed by the commits after `version` (all commits when None), from Delta's
        change data feed: before and after images of updates, inserted and deleted rows, with
        ``CHANGE_TYPE`` and ``CHANGE_VERSION``. None when the feed cannot cover that range
        (a table written before the feed was enabled); the caller must treat the whole table
        as changed. An empty frame when nothing changed.
        """
        table = self._open()
        if table is None or (version is not None and table.version() <= version):
            return pl.DataFrame()
        if not _feeds_changes(table):
            return None
        try:
            reader = table.load_cdf(starting_version=0 if version is None else version + 1)
            frame = pl.from_arrow(pa.table(reader.read_all()))
        except Exception:  # noqa: BLE001 - delta-rs raises several types for a missing feed
            return None
        assert isinstance(frame, pl.DataFrame)
        return frame

    def merge(
        self,
        latest: pl.DataFrame,
        key: list[str],
        consumed: ConsumedOffsets,
        *,
        nullable_key: bool = False,
        extra_metadata: dict[str, str] | None = None,
        truncate: TruncatedAt | None = None,
        column_defaults: Mapping[str, Any] | None = None,
        replace_incompatible: bool = False,
    ) -> MergeStats:
        """Merge `latest` (one newest change per key, `STORED_PROVENANCE` included).

        `consumed` (the offsets held once this commit is in) goes into the commit metadata in
        the same atomic commit as the rows. With `truncate`, the same commit also turns every
        stored live row whose change is before it into a tombstone at its position (`latest`
        must hold no change before it). `column_defaults` (`BronzeRead.column_defaults`) fill a
        column new to the stored table in the rows stored before it (see `_align_schemas`).
        """
        metadata = {COMMIT_METADATA_KEY: consumed.to_json(), **(extra_metadata or {})}
        properties = CommitProperties(custom_metadata=metadata)
        source = delta_compatible(latest.to_arrow(compat_level=pl.CompatLevel.oldest()))
        table = self._open()
        if table is None:
            if self._is_local:
                Path(self.uri).mkdir(parents=True, exist_ok=True)
            write_deltalake(
                self.uri,
                source,
                mode="error",
                configuration=CHANGE_DATA_FEED,
                storage_options=self.storage_options,
                commit_properties=properties,
            )
            return MergeStats(0, source.num_rows, source.num_rows, 0, False)
        if not _feeds_changes(table):
            # a table from before the feed: changes are fed from the next commit on
            table.alter.set_table_properties(CHANGE_DATA_FEED)
        source, rewritten = self._align_schemas(
            table, source, _delta_values(latest, column_defaults or {}), replace_incompatible
        )
        if rewritten:
            table = self._open()
            assert table is not None
        merger = (
            table.merge(
                source,
                predicate=" AND ".join(
                    p
                    for p in (
                        key_predicate(key, nullable=nullable_key),
                        # a TRUNCATE reaches every stored row, not only those of touched keys
                        "" if truncate is not None else key_range_predicate(latest, key),
                    )
                    if p
                ),
                source_alias=_SOURCE,
                target_alias=_TARGET,
                merge_schema=True,
                commit_properties=properties,
            )
            .when_matched_update_all(predicate=NEWER_PREDICATE)
            .when_not_matched_insert_all()
        )
        if truncate is not None:
            merger = self._truncating(merger, table, key, truncate, keep_values=nullable_key)
        result: dict[str, Any] = merger.execute()
        return MergeStats(
            version=table.version(),
            source_rows=source.num_rows,
            inserted=int(result.get("num_target_rows_inserted", 0)),
            updated=int(result.get("num_target_rows_updated", 0)),
            schema_rewritten=rewritten,
        )

    @staticmethod
    def _truncating(
        merger: Any, table: DeltaTable, key: list[str], truncate: TruncatedAt, *, keep_values: bool
    ) -> Any:
        """`merger` also turning stored live rows no change touches, and whose change is before
        the TRUNCATE, into its tombstones (rows a change touches are replaced by it: every
        change given is after the TRUNCATE)."""
        columns = pa.schema(table.schema().to_arrow()).names
        return merger.when_not_matched_by_source_update(
            updates=truncated_updates(columns, key, truncate, keep_values=keep_values),
            predicate=f"NOT {_q(_TARGET, DELETED)} AND {before_sql(_TARGET, truncate)}",
        )

    @property
    def _is_local(self) -> bool:
        return "://" not in self.uri or self.uri.startswith("file://")

    def _align_schemas(
        self,
        table: DeltaTable,
        source: pa.Table,
        defaults: Mapping[str, pa.Scalar] | None = None,
        replace_incompatible: bool = False,
    ) -> tuple[pa.Table, bool]:
        """Cast `source` to the stored types, or widen the stored table first if needed.

        New columns are left to MERGE's schema evolution, except those with a default in
        `defaults`: every row stored so far was merged before the column existed, and MySQL gave
        the rows existing at `ADD COLUMN` the column's default, so the stored live rows get it
        (tombstones stay null) in a rewrite before the merge. Stored columns the changes lack (a
        dropped column) are added to them as nulls, so a new version does not keep an old
        value. A type the stored table must widen
        (INT to BIGINT, a wider DECIMAL) rewrites the table once with the widened schema, as
        Delta cannot widen a column in place here; types with no common type are refused, unless
        `replace_incompatible`: a resync re-read every row after such a change and these changes
        hold its rows (`binlake.silver.schema_guard.heals`), so the stored column is replaced by
        one of the new type, null until this merge writes the re-read values.
        """
        stored = pa.schema(table.schema().to_arrow())
        stored_types = {f.name: f.type for f in stored}
        widen: dict[str, pa.DataType] = {}
        replaced: dict[str, pa.DataType] = {}
        for i, field in enumerate(source.schema):
            old = stored_types.get(field.name)
            if old is None or _plain(old).equals(_plain(field.type)):
                continue
            wide = common_type(_plain(old), _plain(field.type))
            if wide is None and replace_incompatible:
                replaced[field.name] = _plain(field.type)
                source = source.set_column(
                    i,
                    field.with_type(_plain(field.type)),
                    source.column(i).cast(_plain(field.type)),
                )
                continue
            if wide is None:
                raise FinalError(
                    f"silver table {self.uri}: column {field.name!r} is {old} in silver and "
                    f"{field.type} in the new bronze changes; no type holds both"
                )
            if not wide.equals(_plain(old)):
                widen[field.name] = wide
            if not wide.equals(field.type):
                source = source.set_column(i, field.with_type(wide), source.column(i).cast(wide))
        for field in stored:
            if field.name not in source.schema.names:
                source = source.append_column(field, pa.nulls(source.num_rows, field.type))
        fill = {
            f.name: (defaults or {})[f.name]
            for f in source.schema
            if f.name not in stored_types and (defaults or {}).get(f.name) is not None
        }
        if not widen and not fill and not replaced:
            return source, False
        current = table.to_pyarrow_table()
        for name, new_type in replaced.items():
            i = current.schema.get_field_index(name)
            current = current.set_column(
                i, pa.field(name, new_type), pa.nulls(current.num_rows, new_type)
            )
        for name, wide in widen.items():
            i = current.schema.get_field_index(name)
            current = current.set_column(
                i, current.schema.field(i).with_type(wide), current.column(i).cast(wide)
            )
        for name, value in fill.items():
            live = pc.invert(current.column(DELETED))
            column = source.schema.field(name)
            current = current.append_column(
                column, pc.if_else(live, value.cast(column.type), pa.scalar(None, column.type))
            )
        write_deltalake(
            self.uri,
            current,
            mode="overwrite",
            schema_mode="overwrite",
            storage_options=self.storage_options,
            commit_properties=CommitProperties(
                custom_metadata={
                    # the rewrite holds only what was merged before it
                    COMMIT_METADATA_KEY: self.consumed().to_json(),
                    "binlake.widened": ",".join(sorted(widen)),
                    "binlake.filled_defaults": ",".join(sorted(fill)),
                    "binlake.replaced_types": ",".join(sorted(replaced)),
                }
            ),
        )
        return source, True

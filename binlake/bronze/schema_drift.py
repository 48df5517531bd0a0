"""Schema drift: how a table's row shape changed after a DDL, and whether bronze may take it.

Debezium emits a new row schema after every DDL. Bronze keeps per table a *cumulative* schema:
the source's current columns, in source order, each with the widest type it has had, followed by
the columns the source dropped. Dropped columns stay (null from then on) so that readers of old
and new files see one table; they carry the field metadata `binlake.dropped` so the next
comparison knows they are gone from the source rather than dropped again.

`classify(previous, new, previous_pk, new_pk)` compares the cumulative schema with a new one:

* SAME      nothing bronze stores changes: VARCHAR(20) -> VARCHAR(50) (both Arrow string), or a
            column's NOT NULL flag (every bronze table column is nullable anyway).
* ACCEPTED  readers of old and new files get one widened schema without losing or changing a
            value: a new column, a dropped column, integer widening (int8 -> int16 -> int32 ->
            int64), DECIMAL(p,s) -> DECIMAL(p',s') with no fewer integer digits and no fewer
            decimals (decimal128 -> decimal256 included), float32 -> float64, a finer timestamp
            unit, column order. `schema` is the merged schema, the table's schema from now on.
* BREAKING  casting would lose values or change their meaning: another type family (INT ->
            VARCHAR), narrowing (BIGINT -> INT, DECIMAL(12,4) -> DECIMAL(10,2)), a time zone
            change, a primary key change. `schema` is the new schema as it is: bronze writes the
            new records with their true types under a new schema version and never casts them.
            Also BREAKING, because the change stream cannot say what the source did to the rows
            no binlog event touched: a step that drops column(s) and adds column(s) at once (a
            suspected rename, `CHANGE b b2 ...` / `RENAME COLUMN`: rows not changed since would
            hold null in the new column), and a dropped column added again (the source gave
            every row the new column's default; the lake still holds the old values). Each
            needs a resync of the table (`SchemaNeedsResync`).

Column defaults (`cdc.column_defaults`) travel as field metadata. In a cumulative schema a column
keeps the default it had when it was added to the table, whatever later schemas say: MySQL gives
the rows existing at `ADD COLUMN` that default, and a later `SET DEFAULT` changes no row. So a
default change alone is SAME (no new version), and `fingerprint` leaves defaults out.

These are pure functions of pyarrow schemas, shared by the bronze writer, the bronze asset check
and the bronze reader, so all three agree on what is compatible.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import pyarrow as pa

from binlake.bronze.layout import PROVENANCE_COLUMNS
from binlake.errors import FinalError
from cdc.column_defaults import has_unknown_default, with_default

__all__ = [
    "PRIMARY_KEY",
    "BreakingChange",
    "ChangeKind",
    "ColumnChange",
    "SchemaChange",
    "SchemaNeedsResync",
    "classify",
    "common_type",
    "fingerprint",
    "fits_within",
    "is_dropped",
    "mark_dropped",
    "row_schema_of",
    "type_name",
]

DROPPED_KEY = b"binlake.dropped"
# `BreakingChange.column` of a primary key change (no column name can contain spaces or parens).
PRIMARY_KEY = "(primary key)"

_SAME = "same"
_WIDENED = "widened"
_BREAKING = "breaking"
_UNIT_RANK = {"s": 0, "ms": 1, "us": 2, "ns": 3}
_PROVENANCE = frozenset(PROVENANCE_COLUMNS)


class ChangeKind(str, Enum):
    SAME = "same"
    ACCEPTED = "accepted"
    BREAKING = "breaking"


@dataclass(frozen=True)
class ColumnChange:
    """One accepted difference between two schemas of a table."""

    column: str
    change: str  # added, added_not_null, dropped, readded, widened, reordered
    old_type: str | None = None
    new_type: str | None = None

    def __str__(self) -> str:
        if self.change == "widened":
            return f"column {self.column!r} widened from {self.old_type} to {self.new_type}"
        if self.change in ("added", "added_not_null"):
            not_null = " NOT NULL" if self.change == "added_not_null" else ""
            return f"column {self.column!r} added ({self.new_type}{not_null})"
        if self.change == "dropped":
            return f"column {self.column!r} ({self.old_type}) dropped, kept as nulls"
        if self.change == "readded":
            return f"column {self.column!r} added again ({self.old_type} -> {self.new_type})"
        return "columns reordered"


@dataclass(frozen=True)
class BreakingChange:
    """One difference that bronze must not cast away: names the column(s) and both types."""

    column: str  # or PRIMARY_KEY; the first of `columns` for a change of several columns
    old_type: str
    new_type: str
    reason: str
    # Every column involved (a suspected rename: the dropped ones, then the added ones).
    columns: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.column == PRIMARY_KEY:
            return f"primary key changed from {self.old_type} to {self.new_type}"
        if len(self.columns) > 1:
            return f"columns {self.old_type} -> {self.new_type}: {self.reason}"
        return (
            f"column {self.column!r} changed from {self.old_type} to {self.new_type}: {self.reason}"
        )


class SchemaNeedsResync(FinalError):
    """A schema change silver cannot apply exactly from the change stream.

    Raised by the silver merge path (and reported by the bronze schema check) while bronze holds
    a breaking step that no completed resync of the table has healed. It names the table, the
    columns and their old and new types; `binlake resync --table <table>` heals it.
    """

    def __init__(
        self,
        table: str,
        changes: Sequence[BreakingChange],
        *,
        schema_version: int,
        first_offset: int,
        first_position: str | None = None,
        detail: str = "",
    ):
        self.table = table
        self.changes = tuple(changes)
        self.schema_version = schema_version  # the version the breaking step starts
        self.first_offset = first_offset  # its first record's offset in the table's partition
        self.first_position = first_position  # its binlog position, "file:pos", when known
        # Per change, in order: what the bronze schema check and `binlake resync` report.
        self.old_types = tuple(change.old_type for change in self.changes)
        self.new_types = tuple(change.new_type for change in self.changes)
        self.reasons = tuple(change.reason for change in self.changes)
        what = "; ".join(str(change) for change in self.changes)
        super().__init__(
            f"{table}: schema version {schema_version} cannot be applied exactly from the change "
            f"stream ({what}). Silver refuses to merge it rather than leave wrong values or "
            f"nulls; resync the table (binlake resync --table {table}){detail}"
        )

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for change in self.changes for c in (change.columns or (change.column,)))


@dataclass(frozen=True)
class SchemaChange:
    """The result of `classify`."""

    kind: ChangeKind
    # The table's schema from now on: the previous one (SAME), the merged one (ACCEPTED) or the
    # new one as it is (BREAKING).
    schema: pa.Schema
    primary_key: tuple[str, ...]
    changes: tuple[ColumnChange, ...] = ()
    breaking: tuple[BreakingChange, ...] = ()

    # The first breaking change's column, types and reason (None: not breaking), for callers
    # that report one column.
    column: str | None = dataclasses.field(init=False)
    old_type: str | None = dataclasses.field(init=False)
    new_type: str | None = dataclasses.field(init=False)
    reason: str | None = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        first = self.breaking[0] if self.breaking else None
        for name in ("column", "old_type", "new_type", "reason"):
            object.__setattr__(self, name, getattr(first, name, None))

    def describe(self) -> str:
        parts = [str(b) for b in self.breaking] + [str(c) for c in self.changes]
        return "; ".join(parts) if parts else "no change"


# -- columns ----------------------------------------------------------------------------------


def is_dropped(field: pa.Field) -> bool:
    return bool(field.metadata) and field.metadata.get(DROPPED_KEY) == b"true"


def mark_dropped(field: pa.Field) -> pa.Field:
    """`field` as a column the source no longer has (nullable: it is null from now on)."""
    return field.with_nullable(True).with_metadata({**(field.metadata or {}), DROPPED_KEY: b"true"})


def row_schema_of(file_schema: pa.Schema) -> pa.Schema:
    """The table's own columns of a bronze file's schema (provenance columns removed)."""
    return pa.schema([f for f in file_schema if f.name not in _PROVENANCE])


def type_name(data_type: pa.DataType) -> str:
    return str(data_type)


def fingerprint(schema: pa.Schema) -> str:
    """A short stable hash of a row schema: column names, types and dropped marks, in order.

    Nullability is left out (bronze stores every table column as nullable), as is any schema
    metadata, so equal shapes give equal fingerprints whatever produced them.
    """
    canonical = [[f.name, str(f.type), is_dropped(f)] for f in schema]
    text = json.dumps(canonical, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- types ------------------------------------------------------------------------------------


# A column type's family, by the first test it passes; a type of no family is its own.
_FAMILIES: tuple[tuple[Callable[[pa.DataType], bool], str], ...] = (
    (pa.types.is_integer, "integer"),
    (pa.types.is_floating, "floating point"),
    (pa.types.is_decimal, "decimal"),
    (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "string"),
    (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), "binary"),
    (pa.types.is_timestamp, "timestamp"),
    (pa.types.is_duration, "duration"),
    (pa.types.is_time, "time"),
    (pa.types.is_date, "date"),
    (pa.types.is_boolean, "boolean"),
)


def _family(t: pa.DataType) -> str:
    return next((family for test, family in _FAMILIES if test(t)), str(t))


def _compare(old: pa.DataType, new: pa.DataType) -> tuple[str, str]:
    """(_SAME | _WIDENED | _BREAKING, why) for a column whose type goes from `old` to `new`."""
    if old.equals(new):
        return _SAME, ""
    old_family, new_family = _family(old), _family(new)
    if old_family != new_family:
        return _BREAKING, f"type family changed ({old_family} -> {new_family})"
    if old_family == "integer":
        if pa.types.is_signed_integer(old) and pa.types.is_unsigned_integer(new):
            return _BREAKING, "signed to unsigned: negative values would not fit"
        # unsigned -> signed needs a strictly wider type to hold the largest unsigned value
        need = old.bit_width + (
            1 if pa.types.is_unsigned_integer(old) and pa.types.is_signed_integer(new) else 0
        )
        if new.bit_width >= need:
            return _WIDENED, ""
        if new.bit_width == old.bit_width:
            return _BREAKING, "unsigned to signed of the same width: large values would not fit"
        return _BREAKING, f"narrowed from {old.bit_width} to {new.bit_width} bits"
    if old_family == "floating point":
        if new.bit_width > old.bit_width:
            return _WIDENED, ""
        return _BREAKING, f"narrowed from {old.bit_width} to {new.bit_width} bits"
    if old_family == "decimal":
        old_digits, new_digits = old.precision - old.scale, new.precision - new.scale
        if new_digits < old_digits:
            return _BREAKING, f"narrowed: fewer integer digits ({old_digits} -> {new_digits})"
        if new.scale < old.scale:
            return _BREAKING, f"narrowed: fewer decimal places ({old.scale} -> {new.scale})"
        return _WIDENED, ""
    if old_family in ("string", "binary"):
        # Only the offset width differs: large_* holds every value of the plain type.
        if new.id != old.id and (pa.types.is_large_string(new) or pa.types.is_large_binary(new)):
            return _WIDENED, ""
        return _BREAKING, "narrowed to 32-bit offsets"
    if old_family in ("timestamp", "duration", "time"):
        if getattr(old, "tz", None) != getattr(new, "tz", None):
            return _BREAKING, f"time zone changed ({old.tz} -> {new.tz})"  # type: ignore[attr-defined]
        if _UNIT_RANK[new.unit] > _UNIT_RANK[old.unit]:  # type: ignore[attr-defined]
            return _WIDENED, ""
        return _BREAKING, f"narrowed to a coarser unit ({old.unit} -> {new.unit})"  # type: ignore[attr-defined]
    return _BREAKING, "changed to a type that is not a lossless widening"


def fits_within(small: pa.Schema, big: pa.Schema) -> bool:
    """True if every column of `small` is in `big` with the same or a wider type."""
    for column in small:
        index = big.get_field_index(column.name)
        if index < 0 or _compare(column.type, big.field(index).type)[0] == _BREAKING:
            return False
    return True


def common_type(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """The narrowest type that holds every value of `a` and of `b`, or None if there is none.

    Readers cast older files up to it, so a table read across schema versions has one widened
    type per column. None for types of different families (a breaking change): no type holds
    both without changing values.
    """
    if a.equals(b):
        return a
    if _compare(a, b)[0] == _WIDENED:
        return b
    if _compare(b, a)[0] == _WIDENED:
        return a
    if _family(a) != _family(b):
        return None
    if pa.types.is_decimal(a):
        scale = max(a.scale, b.scale)
        precision = max(a.precision - a.scale, b.precision - b.scale) + scale
        if precision <= 38 and pa.types.is_decimal128(a) and pa.types.is_decimal128(b):
            return pa.decimal128(precision, scale)
        return pa.decimal256(precision, scale) if precision <= 76 else None
    if pa.types.is_integer(a):  # one signed, one unsigned
        signed, unsigned = (a, b) if pa.types.is_signed_integer(a) else (b, a)
        width = max(signed.bit_width, 2 * unsigned.bit_width)
        return {8: pa.int8(), 16: pa.int16(), 32: pa.int32(), 64: pa.int64()}.get(width)
    return None


# -- schemas ----------------------------------------------------------------------------------


def _same_shape(a: pa.Schema, b: pa.Schema) -> bool:
    return len(a) == len(b) and all(
        x.name == y.name and x.type.equals(y.type) and is_dropped(x) == is_dropped(y)
        for x, y in zip(a, b, strict=True)
    )


def _key_text(key: Sequence[str]) -> str:
    return "(" + ", ".join(key) + ")"


def _columns_text(fields: Sequence[pa.Field]) -> str:
    return "(" + ", ".join(f"{f.name} {type_name(f.type)}" for f in fields) + ")"


def _suspected_rename(dropped: Sequence[pa.Field], added: Sequence[pa.Field]) -> BreakingChange:
    """Columns dropped and added in one schema step: the change stream cannot tell a rename
    (`CHANGE b b2 ...`, `RENAME COLUMN`) from a drop and an add, and after a rename the rows no
    binlog event touched would hold null in the new column."""
    return BreakingChange(
        added[0].name,
        _columns_text(dropped),
        _columns_text(added),
        "column(s) dropped and added in one schema change: a suspected rename; rows not changed "
        "since would hold null in the new column(s)",
        columns=tuple(f.name for f in dropped) + tuple(f.name for f in added),
    )


def classify(
    previous: pa.Schema,
    new: pa.Schema,
    previous_pk: Sequence[str] = (),
    new_pk: Sequence[str] = (),
) -> SchemaChange:
    """How a table whose bronze schema is `previous` changes when its rows arrive as `new`.

    `previous` is the table's cumulative schema (dropped columns marked); `new` is a row schema
    as Debezium sends it, or another cumulative schema (its dropped columns are then treated as
    absent from the source). See the module docstring for the three kinds.
    """
    previous_pk, new_pk = tuple(previous_pk), tuple(new_pk)
    old_fields = {f.name: f for f in previous}
    previous_names = bool(old_fields)  # a first schema adds nothing to existing rows
    incoming = [f for f in new if not is_dropped(f)]
    incoming_names = {f.name for f in incoming}
    changes: list[ColumnChange] = []
    breaking: list[BreakingChange] = []
    if previous_pk != new_pk:
        breaking.append(
            BreakingChange(
                PRIMARY_KEY,
                _key_text(previous_pk),
                _key_text(new_pk),
                "rows would be matched by other columns than before",
            )
        )
    added: list[pa.Field] = []
    for field in incoming:
        old = old_fields.get(field.name)
        if old is None:
            kind = "added" if field.nullable else "added_not_null"
            changes.append(ColumnChange(field.name, kind, None, type_name(field.type)))
            added.append(field)
            if previous_names and has_unknown_default(field):
                breaking.append(
                    BreakingChange(
                        field.name,
                        "(absent)",
                        f"{type_name(field.type)} NOT NULL",
                        "added NOT NULL without a default: the source gave existing rows the "
                        "type's implicit default, which the change stream does not tell",
                    )
                )
            continue
        verdict, why = _compare(old.type, field.type)
        if verdict == _BREAKING:
            breaking.append(
                BreakingChange(field.name, type_name(old.type), type_name(field.type), why)
            )
        elif is_dropped(old):
            changes.append(
                ColumnChange(field.name, "readded", type_name(old.type), type_name(field.type))
            )
            breaking.append(
                BreakingChange(
                    field.name,
                    type_name(old.type),
                    type_name(field.type),
                    "a dropped column added again: the source gave every existing row the new "
                    "column's default, the lake still holds the values from before the drop",
                )
            )
        elif verdict == _WIDENED:
            changes.append(
                ColumnChange(field.name, "widened", type_name(old.type), type_name(field.type))
            )
    dropped: list[pa.Field] = []
    newly_dropped: list[pa.Field] = []
    for old in previous:
        if old.name in incoming_names:
            continue
        if not is_dropped(old):
            changes.append(ColumnChange(old.name, "dropped", type_name(old.type), None))
            newly_dropped.append(old)
        dropped.append(mark_dropped(old))
    if newly_dropped and added:
        breaking.append(_suspected_rename(newly_dropped, added))

    if breaking:
        return SchemaChange(ChangeKind.BREAKING, new, new_pk, tuple(changes), tuple(breaking))
    # The source's columns in its order, then the dropped ones. Reuse `new` itself when it is
    # exactly that, so callers can keep comparing schemas by identity. A column the table had
    # keeps the default it was added with (see the module docstring).
    carried = [
        with_default(f, old_fields.get(f.name)) if f.name in old_fields else f for f in incoming
    ]
    if dropped or any(a is not b for a, b in zip(carried, incoming, strict=True)):
        merged = pa.schema(carried + dropped)
    else:
        merged = new if len(incoming) == len(new) else pa.schema(incoming)
    if not changes:
        if _same_shape(merged, previous):
            return SchemaChange(ChangeKind.SAME, previous, previous_pk)
        changes.append(ColumnChange("*", "reordered"))
    return SchemaChange(ChangeKind.ACCEPTED, merged, new_pk, tuple(changes))

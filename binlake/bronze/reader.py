"""Reading bronze as the manifest lists it: one table's rows, widened to one schema.

A file exists for readers once its manifest entry exists, so reading what the manifest names is
consistent even while the bronze writer is adding files. Never a directory listing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from binlake.bronze.layout import META_PRIMARY_KEY, OP
from binlake.bronze.manifest import Manifest, ManifestEntry, live_entries
from binlake.bronze.schema_drift import common_type
from binlake.errors import FinalError, RetriableError
from binlake.settings import Settings
from binlake.storage import LakeStorage
from cdc.column_defaults import column_default
from cdc.envelope import TOMBSTONE, TRUNCATE


@contextmanager
def listed_file_errors(path: str, reading: str = "") -> Iterator[None]:
    """Failures to read bronze file `path` (`reading`: what of it, e.g. "the schema of ") as
    binlake errors: a file the manifest lists is never missing (final); other I/O may pass."""
    try:
        yield
    except FileNotFoundError as exc:
        raise FinalError(
            f"bronze file {path} is listed in the manifest but missing from the lake"
        ) from exc
    except OSError as exc:
        raise RetriableError(f"cannot read {reading}bronze file {path}: {exc}") from exc


class AlreadyRead(Protocol):
    """What a reader has taken in already (silver's `ConsumedOffsets`): left out of a read."""

    @property
    def manifest_cursor(self) -> int:
        """Every manifest entry before this manifest position (`Manifest.read_since` cursor) was
        considered."""
        ...

    def covers_entry(self, entry: ManifestEntry) -> bool:
        """Whether every offset of `entry`'s file was taken in."""
        ...

    def unconsumed(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The rows of `frame` outside what was taken in."""
        ...


@dataclass(frozen=True)
class BronzeRead:
    """All bronze rows of one table as listed by the manifest at the time of reading."""

    table: str
    frame: pl.DataFrame
    primary_key: list[str]  # empty when the table has none
    manifest_bytes: int  # manifest position consumed (a `Manifest.read_since` cursor)
    entries_read: int  # manifest entries of this table (duplicates of a path counted once)
    paths: list[str] = field(default_factory=list)
    # Per column, the value rows that existed before the column was added hold in the source
    # (its default when added, `cdc.column_defaults`), as readers get the column's values
    # (decimal256 as text). Columns without a default are not listed: their fill is null.
    column_defaults: dict[str, Any] = field(default_factory=dict)
    # The manifest entries read (one per path), for the schema guard (`schema_versions_read`).
    entries: list[ManifestEntry] = field(default_factory=list)

    @property
    def schema_version(self) -> int:
        """The newest bronze schema version among the files read (0: none tracked)."""
        return max((e.schema_version for e in self.entries), default=0)


class BronzeReader:
    """Bronze of one lake as the manifest lists it."""

    def __init__(self, storage: LakeStorage) -> None:
        self.storage = storage

    @classmethod
    def from_settings(cls, settings: Settings) -> BronzeReader:
        return cls(LakeStorage.from_settings(settings))

    def manifest(self) -> Manifest:
        return Manifest(self.storage)

    def manifest_size(self) -> int:
        """The cursor after the manifest's last commit (0 if there is none yet): a cursor larger
        than this one belongs to another lake."""
        return self.manifest().end()

    def read_manifest_since(
        self, cursor: int, limit: int | None = None
    ) -> tuple[list[ManifestEntry], int]:
        """Entries committed from cursor `cursor` on (at most `limit`, see `Manifest.read_since`)
        and the cursor to use next."""
        return self.manifest().read_since(cursor, limit=limit)

    def read_table(self, table: str, consumed: AlreadyRead | None = None) -> BronzeRead:
        """Bronze rows of `<db>.<table>`, files concatenated in manifest order.

        With `consumed`, only what a silver table has not merged yet: manifest entries after
        its manifest cursor, files not wholly inside its offset ranges, rows outside them.
        Without, every row.

        Files of one table may have different but compatible schemas (a column added, a type
        widened): each file is first cast to the widest type every column has across the files
        (see ``_widened``), then they are concatenated with ``diagonal_relaxed``. A column a file
        lacks (the file is older than the column) gets the column's default as a newer file's
        schema records it, which is what MySQL gave the rows that existed when the column was
        added; without a recorded default it is null.
        """
        storage = self.storage
        cursor = 0 if consumed is None else consumed.manifest_cursor
        if cursor and self.manifest_size() < cursor:
            raise FinalError(
                f"the bronze manifest ends before commit {cursor} that silver {table} has "
                "read up to: bronze was replaced under silver; rebuild silver from bronze"
            )
        entries, manifest_bytes = Manifest(storage).read_since(cursor)
        # A file rewritten under its name is read once; files compacted away or expired are not.
        by_path = {
            entry.path: entry
            for entry in live_entries(e for e in entries if e.table == table)
            if consumed is None or not consumed.covers_entry(entry)
        }
        arrows: list[pa.Table] = []
        primary_key: list[str] = []
        for path, entry in by_path.items():
            with listed_file_errors(path):
                arrow = pq.read_table(storage.full_path(path), filesystem=storage.filesystem)
            # The newest file's key wins: a key change (ALTER TABLE) applies from then on.
            primary_key = list(entry.primary_key) or _primary_key_from_metadata(arrow.schema)
            arrows.append(arrow)
        defaults = _column_defaults(table, arrows)
        frames = [
            pl.from_arrow(_without_decimal256(arrow))  # type: ignore[arg-type]
            for arrow in _with_defaults(_widened(arrows), defaults)
        ]
        frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
        if consumed is not None:
            frame = consumed.unconsumed(frame)
        return BronzeRead(
            table=table,
            frame=frame,
            primary_key=primary_key,
            manifest_bytes=manifest_bytes,
            entries_read=len(by_path),
            paths=list(by_path),
            column_defaults={name: _reader_value(value) for name, value in defaults.items()},
            entries=list(by_path.values()),
        )


def _widened(tables: list[pa.Table]) -> list[pa.Table]:
    """`tables` with each column cast to the widest type it has in any of them.

    polars' ``diagonal_relaxed`` alone gets some accepted widenings wrong: timestamp[ms] with
    timestamp[us] gives milliseconds (dropping microseconds), and decimal256 columns must become
    strings of one scale whatever file they come from. Columns whose types have no common type
    (a breaking change, which the bronze schema check reports) are left to polars.
    """
    target: dict[str, pa.DataType | None] = {}
    for table in tables:
        for column in table.schema:
            if column.name not in target:
                target[column.name] = column.type
            elif (known := target[column.name]) is not None and not known.equals(column.type):
                target[column.name] = common_type(known, column.type)
    widened: list[pa.Table] = []
    for table in tables:
        for i, column in enumerate(table.schema):
            wanted = target[column.name]
            if wanted is not None and not column.type.equals(wanted):
                table = table.set_column(i, column.with_type(wanted), table.column(i).cast(wanted))
        widened.append(table)
    return widened


def _column_defaults(table: str, arrows: list[pa.Table]) -> dict[str, pa.Scalar]:
    """Each column's recorded default (`cdc.column_defaults`), from the newest file holding it.

    Every file of a schema version carries the default the column was added with (the writer's
    cumulative schema keeps it), so any file would do; the newest one is the table's latest word.
    """
    defaults: dict[str, pa.Scalar] = {}
    for arrow in reversed(arrows):
        for column in arrow.schema:
            if column.name in defaults:
                continue
            try:
                value = column_default(column)
            except ValueError as exc:
                raise FinalError(f"bronze {table}: {exc}") from None
            if value is not None:
                defaults[column.name] = value
    return defaults


def _with_defaults(tables: list[pa.Table], defaults: dict[str, pa.Scalar]) -> list[pa.Table]:
    """`tables` with each column that has a default and that a table lacks added, filled with it.

    A file lacks a column only when it is older than the column (the bronze writer keeps dropped
    columns): its rows existed before the column was added, and the source gave them the default.
    """
    # The type every file holding the column has after `_widened`.
    types = {f.name: f.type for table in tables for f in table.schema if f.name in defaults}
    filled: list[pa.Table] = []
    for table in tables:
        for name, value in defaults.items():
            if name not in table.schema.names:
                wanted = types.get(name, value.type)
                fill = pa.repeat(value.cast(wanted), table.num_rows)
                if OP in table.schema.names:
                    # A tombstone (a file of keys only, too) or a TRUNCATE carries no row:
                    # nothing to fill. (`t` is also an old bronze file's tombstone.)
                    no_row = pc.is_in(table.column(OP), pa.array([TOMBSTONE, TRUNCATE]))
                    fill = pc.if_else(no_row, pa.scalar(None, wanted), fill)
                table = table.append_column(pa.field(name, wanted), fill)
        filled.append(table)
    return filled


def _reader_value(value: pa.Scalar) -> Any:
    """`value` as readers of `BronzeRead.frame` get it (a decimal256 as exact text)."""
    one = pa.table({"value": pa.array([value.as_py()], value.type)})
    return _without_decimal256(one).column(0)[0].as_py()


def _without_decimal256(table: pa.Table) -> pa.Table:
    """`table` with its decimal256 columns (MySQL DECIMAL(p>38)) cast to exact decimal strings.

    polars has no 256-bit decimal: ``pl.from_arrow`` panics on decimal256. A string keeps every
    digit; a float or a decimal128 would lose or refuse values.
    """
    schema = table.schema
    wide = [i for i, f in enumerate(schema) if pa.types.is_decimal256(f.type)]
    if not wide:
        return table
    for i in wide:
        as_string = schema.field(i).with_type(pa.string())
        # Fixed-point text with every digit of the scale, as MySQL prints it: Arrow's own cast
        # writes small values in exponent notation ("-1E-30").
        text = [None if v is None else format(v, "f") for v in table.column(i).to_pylist()]
        table = table.set_column(i, as_string, pa.array(text, pa.string()))
    return table


def _primary_key_from_metadata(schema: Any) -> list[str]:
    raw = (schema.metadata or {}).get(META_PRIMARY_KEY)
    return list(json.loads(raw)) if raw else []

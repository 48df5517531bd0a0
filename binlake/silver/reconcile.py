"""Reconciliation of a silver table with its source: row count and an order-independent hash.

The source side runs in MySQL, so no source row crosses the network: for every row, the MD5 of
its canonical text (the compared columns as MySQL casts them to text, joined by a unit
separator, nulls as a record separator) is cut to its first 64 bits, and those are summed
(``SUM`` over ``CONV``), the technique of pt-table-checksum with a sum instead of an XOR so that
two identical rows do not cancel out. Silver computes the same text with polars and the same
digest in Python, and the two sums are compared modulo 2**64.

Only columns whose text both sides spell alike take part: integers (and BOOLEAN as 0/1),
DECIMAL, text types, ENUM, SET, DATE, DATETIME and TIMESTAMP (in UTC, with their fractional
digits), and BIT as its unsigned number (silver holds BIT(n > 1) as big-endian bytes, MySQL's
order, and BIT(1) as a boolean). Floating point (rounding), JSON (key order and spacing), binary
data, TIME and personal-data columns (masked in silver) are left out; the check's metadata
names both lists.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import polars as pl

from binlake.source_db import SourceDatabase, split_table

DIGEST_MODULUS = 2**64
UNIT_SEPARATOR = "\x1f"
NULL_MARK = "\x1e"

_INTEGER = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year"}
_TEXT = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set"}


@dataclass(frozen=True)
class ComparedColumn:
    name: str
    kind: str  # integer, decimal, text, date, datetime, bit
    fractional_digits: int = 0

    @property
    def mysql_text(self) -> str:
        column = f"`{self.name.replace('`', '``')}`"
        if self.kind == "text":
            return column
        if self.kind == "bit":
            return f"CAST(CAST({column} AS UNSIGNED) AS CHAR)"
        return f"CAST({column} AS CHAR)"

    def silver_text(self, dtype: pl.DataType) -> pl.Expr:
        column = pl.col(self.name)
        if self.kind in ("integer", "bit") and dtype == pl.Boolean:
            return pl.when(column).then(pl.lit("1")).when(~column).then(pl.lit("0"))
        if self.kind == "bit":  # big-endian bytes, at most 8 (BIT(64))
            number = column.bin.encode("hex").str.to_integer(base=16, dtype=pl.UInt64)
            return number.cast(pl.String)
        if self.kind == "date":
            return column.dt.strftime("%Y-%m-%d")
        if self.kind == "datetime":
            if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
                column = column.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
            pattern = "%Y-%m-%d %H:%M:%S"
            if self.fractional_digits:
                pattern += f"%.{self.fractional_digits}f"
            return column.dt.strftime(pattern)
        return column.cast(pl.String)


def compared_columns(
    source_columns: list[tuple[str, str, int | None]], silver: pl.DataFrame, masked: list[str]
) -> tuple[list[ComparedColumn], list[str]]:
    """Columns both sides can spell alike, and the names left out.

    `source_columns` is (name, DATA_TYPE, DATETIME_PRECISION) from information_schema.COLUMNS.
    """
    compared: list[ComparedColumn] = []
    excluded: list[str] = []
    for name, data_type, precision in source_columns:
        kind = _kind(data_type.lower())
        if kind is None or name in masked or name not in silver.columns:
            excluded.append(name)
            continue
        compared.append(ComparedColumn(name, kind, int(precision or 0)))
    return compared, excluded


def _kind(data_type: str) -> str | None:
    if data_type in _INTEGER:
        return "integer"
    if data_type in ("decimal", "numeric"):
        return "decimal"
    if data_type in _TEXT:
        return "text"
    if data_type == "date":
        return "date"
    if data_type in ("datetime", "timestamp"):
        return "datetime"
    if data_type == "bit":
        return "bit"
    return None


def source_digest_sql(db: str, table: str, columns: list[ComparedColumn]) -> str:
    """`SELECT COUNT(*), <digest sum>` over the source table (run with time_zone '+00:00')."""
    if not columns:
        return f"SELECT COUNT(*), 0 FROM `{db}`.`{table}`"
    parts = ", ".join(f"COALESCE({c.mysql_text}, CHAR(30 USING utf8mb4))" for c in columns)
    row_text = f"CONCAT_WS(CHAR(31 USING utf8mb4), {parts})"
    return (
        f"SELECT COUNT(*), COALESCE(SUM(CAST(CONV(LEFT(MD5({row_text}), 16), 16, 10) AS "
        f"UNSIGNED)), 0) FROM `{db}`.`{table}`"
    )


def source_content_digest(
    source: SourceDatabase, table: str, columns: list[ComparedColumn]
) -> tuple[int, int]:
    """(row count, content digest) of `<db>.<table>`, computed by the server."""
    db, name = split_table(table)
    # TIMESTAMP columns as text in UTC, as silver holds them.
    rows = source.query_with_session(
        ["SET SESSION time_zone = '+00:00'"], source_digest_sql(db, name, columns)
    )
    count, digest = rows[0]
    return int(count), int(digest)


def silver_digest(silver: pl.DataFrame, columns: list[ComparedColumn]) -> int:
    """The same digest over `silver`'s rows, modulo 2**64."""
    if not columns or silver.height == 0:
        return 0
    texts = silver.select(
        pl.concat_str(
            [c.silver_text(silver.schema[c.name]).fill_null(NULL_MARK) for c in columns],
            separator=UNIT_SEPARATOR,
        )
    ).to_series()
    total = 0
    for text in texts:
        total += int(hashlib.md5(text.encode()).hexdigest()[:16], 16)
    return total % DIGEST_MODULUS


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    tolerance_rows: int


def judge(
    *,
    source_rows: int,
    silver_rows: int,
    source_digest: int,
    lake_digest: int,
    source_quiet: bool,
    tolerance: float,
) -> Verdict:
    """Exact agreement when the source is quiet; counts within `tolerance` while it is busy."""
    allowed = 0 if source_quiet else int(tolerance * max(source_rows, 1))
    difference = abs(silver_rows - source_rows)
    if source_quiet:
        if difference:
            return Verdict(False, f"source is quiet and counts differ by {difference}", 0)
        if source_digest % DIGEST_MODULUS != lake_digest % DIGEST_MODULUS:
            return Verdict(False, "source is quiet and the content hashes differ", 0)
        return Verdict(True, "counts and content hashes match", 0)
    if difference > allowed:
        return Verdict(
            False, f"source is busy and counts differ by {difference} > {allowed}", allowed
        )
    return Verdict(True, f"source is busy; counts within {allowed} rows", allowed)

"""Masking of personal data before it reaches silver (bronze is the restricted layer).

A column is personal data when settings name it (``silver.pii_columns``: ``<db>.<table>.<col>``
or a bare column name) or its name matches one of ``silver.pii_patterns``. Masking happens on
the changes about to be merged, so no silver version, no silver history and nothing built from
silver ever holds the original value:

* ``hash``: HMAC-SHA256 with ``silver.pii_key``, as 64 hex characters. The same value gives the
  same digest in every table, so joins and distinct counts on a masked column still work, and
  without the key a digest cannot be checked against guessed values.
* ``redact``: null. Refused for a primary-key column, whose rows would then collide.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

import polars as pl

from binlake.errors import ConfigurationError
from binlake.settings import SilverSettings


@dataclass(frozen=True)
class PiiPolicy:
    columns: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]
    mode: str
    key: bytes

    @classmethod
    def from_settings(cls, silver: SilverSettings) -> PiiPolicy:
        return cls(
            columns=frozenset(silver.pii_columns),
            patterns=tuple(re.compile(p) for p in silver.pii_patterns),
            mode=silver.pii_mode,
            key=silver.pii_key.get_secret_value().encode(),
        )

    def masked_columns(self, table: str, columns: list[str]) -> list[str]:
        """The columns of `<db>.<table>` this policy masks."""
        return [
            c
            for c in columns
            if c in self.columns
            or f"{table}.{c}" in self.columns
            or any(p.search(c) for p in self.patterns)
        ]

    def digest(self, value: object) -> str:
        data = value if isinstance(value, bytes) else str(value).encode()
        return hmac.new(self.key, data, hashlib.sha256).hexdigest()

    def mask(
        self, frame: pl.DataFrame, table: str, columns: list[str], primary_key: list[str]
    ) -> pl.DataFrame:
        """`frame` with the personal-data columns among `columns` masked."""
        masked = self.masked_columns(table, columns)
        if not masked:
            return frame
        if self.mode == "redact":
            in_key = [c for c in masked if c in primary_key]
            if in_key:
                raise ConfigurationError(
                    f"{table}: PII column(s) {in_key} are in the primary key; silver.pii_mode="
                    "redact would make every key equal. Use pii_mode=hash."
                )
            return frame.with_columns(pl.lit(None, dtype=frame.schema[c]).alias(c) for c in masked)
        return frame.with_columns(self._hashed(frame[c]) for c in masked)

    def _hashed(self, column: pl.Series) -> pl.Series:
        distinct = column.drop_nulls().unique()
        mapping = {value: self.digest(value) for value in distinct.to_list()}
        return column.replace_strict(mapping, default=None, return_dtype=pl.String)

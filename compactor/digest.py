"""An order-independent digest of a table's rows: equal multisets of rows, equal digests.

Row count plus the sums of the high and low 32 bits of each row's 64-bit hash (polars'
``hash_rows``, every column including the provenance ones); both are computed in one process on
the same schema, which is all a before/after comparison needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

TWO_TO_32 = 1 << 32  # each half summed over < 2**32 rows fits in 64 bits


@dataclass(frozen=True)
class RowDigest:
    rows: int
    high: int
    low: int


def row_digest(table: pa.Table) -> RowDigest:
    # polars has no 256-bit decimal; their text hashes as well
    for i, column in enumerate(table.schema):
        if pa.types.is_decimal256(column.type):
            table = table.set_column(i, column.name, table.column(i).cast(pa.string()))
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if not frame.height:
        return RowDigest(0, 0, 0)
    hashes = frame.select(sorted(frame.columns)).hash_rows(seed=0)
    return RowDigest(
        rows=frame.height,
        high=int((hashes // TWO_TO_32).sum()),
        low=int((hashes % TWO_TO_32).sum()),
    )

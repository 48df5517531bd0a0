"""Manifest entries for tests: one bronze file's entry from its offsets, the rest defaulted,
and a small Parquet file written into a lake together with its entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from binlake.bronze.manifest import Manifest, ManifestEntry
from binlake.storage import LakeStorage


def manifest_entry(
    first: int,
    last: int,
    *,
    path: str,
    partition_key: str,
    table: str = "shop.orders",
    topic: str | None = None,
    partition: int = 0,
    bytes: int = 100,
    written_at: float = 1.0,
    rotation_reason: str = "rows",
    **more: Any,
) -> ManifestEntry:
    """The entry of a file holding offsets `first`..`last` of `topic` (`binlake.<table>` when
    None), one row an offset; `more` sets the optional fields (`primary_key`, ...)."""
    return ManifestEntry(
        table=table,
        topic=f"binlake.{table}" if topic is None else topic,
        partition=partition,
        first_offset=first,
        last_offset=last,
        rows=last - first + 1,
        path=path,
        partition_key=partition_key,
        bytes=bytes,
        written_at=written_at,
        rotation_reason=rotation_reason,
        **more,
    )


# The hour of the compaction tests' files, and when it ended.
HOUR = "2024-06-01-10:00"
HOUR_END = datetime(2024, 6, 1, 11, tzinfo=UTC)


def file(
    first: int, last: int, *, hour: str = HOUR, size: int = 100, fingerprint: str = "a"
) -> ManifestEntry:
    """A bronze file of `hour` written a minute before the hour ended, as compaction sees it."""
    return manifest_entry(
        first,
        last,
        path=f"bronze/shop.orders/{hour}/{first}.parquet",
        partition_key=hour,
        bytes=size,
        written_at=(HOUR_END - timedelta(minutes=1)).timestamp(),
        schema_fingerprint=fingerprint,
    )


def write_with_entry(
    storage: LakeStorage,
    table: pa.Table,
    *,
    name: str,
    lake_table: str,
    partition_key: str,
    written_at: float,
) -> None:
    """`table` as the Parquet file `bronze/<lake_table>/<name>.parquet`, then its manifest entry
    (offsets 0..rows-1 of partition 0, closed by age)."""
    path = f"bronze/{lake_table}/{name}.parquet"
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    storage.write_atomic(path, sink.getvalue().to_pybytes())
    Manifest(storage).append(
        manifest_entry(
            0,
            table.num_rows - 1,
            path=path,
            table=lake_table,
            partition_key=partition_key,
            bytes=1,
            written_at=written_at,
            rotation_reason="age",
        )
    )

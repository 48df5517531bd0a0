"""The bronze layout: where a file lives, what it is called, and which columns every row carries.

    bronze/<db>.<table>/date=YYYY-MM-DD/hour=HH/<topic>+<partition>+<first offset:020d>.parquet

The hour is the hour (UTC) of the source commit (`source.ts_ms`), never the wall clock, so a
replay puts every change in the same file as the first run did. The file name carries the first
Kafka offset it holds, so a retried flush rewrites the same name instead of adding a duplicate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

BRONZE_DIR = "bronze"
DEAD_LETTER_DIR = "bronze/_dead_letter"
MANIFEST_PATH = "bronze/_manifest/manifest.jsonl"
OFFSET_DIGITS = 20
HOUR_KEY_FORMAT = "%Y-%m-%d-%H:%M"  # an hour's partition key, e.g. 2026-01-02-03:00
# The rotation reason of a file the compactor wrote: the same rows as the files it replaces.
COMPACTION_ROTATION_REASON = "compaction"

# Provenance columns, present in every bronze row before the table's own columns.
TOPIC = "_topic"
PARTITION = "_partition"
OFFSET = "_offset"
OP = "_op"  # c, u, d, r (snapshot read) or t (tombstone, key columns only)
SOURCE_FILE = "_source_file"
SOURCE_POS = "_source_pos"
SOURCE_ROW = "_source_row"
SOURCE_TS_MS = "_source_ts_ms"
SOURCE_SNAPSHOT = "_source_snapshot"
CAPTURED_TS_MS = "_captured_ts_ms"  # when Debezium processed the change (envelope ts_ms)
SOURCE_POSITION = (SOURCE_FILE, SOURCE_POS, SOURCE_ROW)  # where the change is in the binlog
PROVENANCE_COLUMNS = (
    TOPIC,
    PARTITION,
    OFFSET,
    OP,
    *SOURCE_POSITION,
    SOURCE_TS_MS,
    SOURCE_SNAPSHOT,
    CAPTURED_TS_MS,
)
# Order in which changes to one key happened: binlog position first (it survives Debezium
# re-sending a change after a crash), then the Kafka offset (order within one transaction).
CHANGE_ORDER = (*SOURCE_POSITION, OFFSET)

# Parquet key-value metadata every bronze file carries.
META_PRIMARY_KEY = b"binlake.primary_key"  # JSON list of key column names
META_TABLE = b"binlake.table"

_SAFE_TABLE = re.compile(r"^[A-Za-z0-9_$]+\.[A-Za-z0-9_$]+$")
_SAFE_TOPIC = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True, order=True)
class HourBucket:
    """One hourly partition of bronze, in UTC."""

    date: str  # YYYY-MM-DD
    hour: int  # 0..23

    @classmethod
    def of_millis(cls, epoch_ms: int) -> HourBucket:
        moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
        return cls(moment.strftime("%Y-%m-%d"), moment.hour)

    @property
    def partition_key(self) -> str:
        """The Dagster hourly partition key for this bucket (`YYYY-MM-DD-HH:00`)."""
        return f"{self.date}-{self.hour:02d}:00"

    @property
    def directory(self) -> str:
        return f"date={self.date}/hour={self.hour:02d}"


def hour_end(partition_key: str) -> datetime:
    """When the hour of `partition_key` (`YYYY-MM-DD-HH:00`, UTC) ends."""
    return datetime.strptime(partition_key, HOUR_KEY_FORMAT).replace(tzinfo=UTC) + timedelta(
        hours=1
    )


def is_safe_table_name(table: str) -> bool:
    """True if `<db>.<table>` can be used as a directory without escaping the bronze root."""
    return bool(_SAFE_TABLE.match(table)) and ".." not in table


def bronze_file_path(
    table: str, bucket: HourBucket, topic: str, partition: int, first_offset: int
) -> str:
    """Path of a bronze file relative to the lake root."""
    if not is_safe_table_name(table):
        raise ValueError(f"table name {table!r} is not a plain <db>.<table>")
    if not _SAFE_TOPIC.match(topic) or topic in (".", ".."):
        raise ValueError(f"topic name {topic!r} cannot be used in a file name")
    if partition < 0 or first_offset < 0:
        raise ValueError(f"partition {partition} and offset {first_offset} must be >= 0")
    name = f"{topic}+{partition}+{first_offset:0{OFFSET_DIGITS}d}.parquet"
    return f"{BRONZE_DIR}/{table}/{bucket.directory}/{name}"


def compacted_file_path(
    table: str, partition_key: str, topic: str, partition: int, first_offset: int, last_offset: int
) -> str:
    """Path of a compacted bronze file: in its hour's directory, named by both end offsets, so it
    never takes the name of a file it replaces (those carry the first offset alone)."""
    bucket = HourBucket(partition_key[:10], int(partition_key[11:13]))
    first = bronze_file_path(table, bucket, topic, partition, first_offset)
    return first.removesuffix(".parquet") + f"-{last_offset:0{OFFSET_DIGITS}d}.parquet"


def table_directory(table: str) -> str:
    if not is_safe_table_name(table):
        raise ValueError(f"table name {table!r} is not a plain <db>.<table>")
    return f"{BRONZE_DIR}/{table}"

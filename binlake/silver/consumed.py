"""What a silver table has consumed from bronze: Kafka offset ranges per topic-partition.

Each silver commit records, in the Delta commit's metadata, the offset ranges it holds and the
manifest byte up to which bronze files were considered. The next update reads only manifest
entries after that byte and, of their rows, only offsets outside the ranges, so its cost follows
the number of new changes, not the table's size or bronze's history. Ranges rather than one
high-water offset per partition, because bronze files can arrive out of offset order (a replay
that writes a lost range again, a slow partition writer after a rebalance); a range consumed
twice is harmless anyway (the merge keeps the newest version by source position) but costs work.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl

from binlake.bronze.layout import OFFSET, PARTITION, TOPIC
from binlake.bronze.manifest import ManifestEntry
from binlake.errors import FinalError

# Key of the commit metadata entry (a JSON string) in each silver Delta commit.
COMMIT_METADATA_KEY = "binlake.silver"
STATE_VERSION = 1

TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class TruncatedAt:
    """Where the newest TRUNCATE TABLE merged happened: its binlog position and Kafka offset.

    No change before it (in ``binlake.bronze.layout.CHANGE_ORDER``) may enter the table any
    more: a change Debezium re-sends or a replay brings late would otherwise bring a truncated
    row back. Kept in every later commit's metadata, next to the consumed offsets.
    """

    file: str
    pos: int
    row: int
    offset: int
    ts_ms: int  # the TRUNCATE's commit time

    @property
    def order(self) -> tuple[str, int, int, int]:
        return (self.file, self.pos, self.row, self.offset)

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "pos": self.pos,
            "row": self.row,
            "offset": self.offset,
            "ts_ms": self.ts_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TruncatedAt:
        return cls(
            str(data["file"]),
            int(data["pos"]),  # type: ignore[call-overload]
            int(data["row"]),  # type: ignore[call-overload]
            int(data["offset"]),  # type: ignore[call-overload]
            int(data["ts_ms"]),  # type: ignore[call-overload]
        )


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive ranges sorted, with overlapping and adjacent ones joined."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if first > last:
            raise ValueError(f"offset range {first}..{last} is empty")
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


@dataclass
class ConsumedOffsets:
    """Offset ranges (inclusive) per topic-partition and the manifest cursor they came from."""

    ranges: dict[TopicPartition, list[tuple[int, int]]] = field(default_factory=dict)
    manifest_cursor: int = 0
    truncated_at: TruncatedAt | None = None  # the newest TRUNCATE merged, if any

    def truncate_at(self, position: TruncatedAt | None) -> bool:
        """Record a TRUNCATE; True if it is newer than the one recorded (the table must be
        emptied up to it), False for none or an older or re-sent one (a re-send has the same
        binlog position at a later offset)."""
        if position is None or (
            self.truncated_at is not None and position.order[:3] <= self.truncated_at.order[:3]
        ):
            return False
        self.truncated_at = position
        return True

    def covers(self, tp: TopicPartition, first: int, last: int) -> bool:
        """Whether every offset of first..last is consumed."""
        return any(a <= first and last <= b for a, b in self.ranges.get(tp, ()))

    def covers_entry(self, entry: ManifestEntry) -> bool:
        """Whether every offset the bronze file of `entry` holds is consumed."""
        tp = (entry.topic, entry.partition)
        return all(self.covers(tp, first, last) for first, last in entry.ranges())

    def add(self, tp: TopicPartition, first: int, last: int) -> None:
        self.ranges[tp] = merge_ranges([*self.ranges.get(tp, ()), (first, last)])

    def add_entries(self, entries: Iterable[ManifestEntry]) -> None:
        """Mark every offset the files of `entries` account for consumed: with Kafka
        transactions, the commit markers between a file's rows are offsets no row holds."""
        for entry in entries:
            for first, last in entry.ranges():
                self.add((entry.topic, entry.partition), first, last)

    def add_offsets(self, frame: pl.DataFrame) -> None:
        """Mark the (topic, partition, offset) rows of `frame` consumed, as ranges."""
        if frame.height == 0:
            return
        runs = (
            frame.select(TOPIC, PARTITION, OFFSET)
            .unique()
            .sort(TOPIC, PARTITION, OFFSET)
            .with_columns(
                # Consecutive offsets share a run id: offset minus its rank within the partition.
                (pl.col(OFFSET) - pl.col(OFFSET).rank("ordinal").over(TOPIC, PARTITION)).alias(
                    "_run"
                )
            )
            .group_by(TOPIC, PARTITION, "_run")
            .agg(pl.col(OFFSET).min().alias("first"), pl.col(OFFSET).max().alias("last"))
        )
        for topic, partition, _, first, last in runs.iter_rows():
            self.add((topic, int(partition)), int(first), int(last))

    def unconsumed(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Rows of `frame` whose offsets are not consumed yet."""
        if frame.height == 0 or not self.ranges:
            return frame
        consumed = pl.DataFrame(
            [
                (topic, partition, first, last)
                for (topic, partition), ranges in self.ranges.items()
                for first, last in ranges
            ],
            schema={TOPIC: pl.String, PARTITION: pl.Int64, "_first": pl.Int64, "_last": pl.Int64},
            orient="row",
        )
        keyed = frame.with_row_index("_row")
        hits = (
            keyed.select("_row", TOPIC, pl.col(PARTITION).cast(pl.Int64), OFFSET)
            .join(consumed, on=[TOPIC, PARTITION], how="inner")
            .filter(pl.col(OFFSET).is_between(pl.col("_first"), pl.col("_last")))
            .select("_row")
        )
        return keyed.join(hits, on="_row", how="anti").drop("_row")

    def to_json(self) -> str:
        state: dict[str, object] = {
            "version": STATE_VERSION,
            "manifest_cursor": self.manifest_cursor,
            "ranges": [
                {"topic": t, "partition": p, "ranges": [list(r) for r in ranges]}
                for (t, p), ranges in sorted(self.ranges.items())
            ],
        }
        if self.truncated_at is not None:  # absent before TRUNCATE was captured: stays readable
            state["truncated_at"] = self.truncated_at.to_dict()
        return json.dumps(state, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ConsumedOffsets:
        try:
            data = json.loads(text)
            if data.get("version") != STATE_VERSION:
                raise FinalError(
                    f"silver state version {data.get('version')!r} is not {STATE_VERSION}"
                )
            ranges = {
                (item["topic"], int(item["partition"])): merge_ranges(
                    (int(a), int(b)) for a, b in item["ranges"]
                )
                for item in data["ranges"]
            }
            truncated = data.get("truncated_at")
            return cls(
                ranges=ranges,
                manifest_cursor=int(data["manifest_cursor"]),
                truncated_at=None if truncated is None else TruncatedAt.from_dict(truncated),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise FinalError(
                f"silver commit metadata {COMMIT_METADATA_KEY} is unreadable: {exc}"
            ) from exc

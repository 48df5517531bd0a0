"""Silver as it stood at a moment, rebuilt from bronze alone.

Bronze keeps every change with its commit time and Kafka offset, so the state of a table at any
earlier point is the newest change per key among the changes up to that point. A rebuild writes
that state as a new Delta table of its own (``SilverTables.rebuild``), never over live silver, with
the same MERGE, masking and tombstones as silver, so it can be compared with silver's own time
travel or with a snapshot of the source.

Once bronze retention (``compactor.bronze_retention_days``) has expired files of a table, no
rebuild of it is complete: the state at any moment depends on its earliest changes. Rebuilds of
such a table are refused rather than silently wrong; silver's own time travel still has them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import polars as pl

from binlake.bronze.layout import OFFSET, PARTITION, SOURCE_FILE, SOURCE_POS, SOURCE_TS_MS, hour_end
from binlake.bronze.manifest import live_entries
from binlake.bronze.reader import BronzeReader
from binlake.errors import FinalError
from binlake.silver.consumed import ConsumedOffsets
from binlake.silver.delta_table import SilverDeltaTable
from binlake.silver.merge_changes import merge_changes
from binlake.silver.pii import PiiPolicy
from binlake.silver.schema_guard import completed_resyncs, refuse_unhealed_schema_changes
from binlake.silver.tables import SilverTables
from binlake.timestamps import iso_time_ms

_OFFSETS = re.compile(r"^\d+:\d+(,\d+:\d+)*$")
# `SHOW MASTER STATUS`'s File and Position, e.g. mariadb-bin.000042:1337.
_BINLOG_POSITION = re.compile(r"^(?P<file>[\w.-]+\.\d+):(?P<pos>\d+)$")


@dataclass(frozen=True)
class AsOf:
    """Up to which change silver is rebuilt: a binlog position, a source commit time, or Kafka
    offsets.

    By binlog position (what `SHOW MASTER STATUS` reports), every change written to the binlog
    before it: the exact state of the source at that position. By time, every change committed
    at or before ``source_ts_ms`` (MySQL's binlog has whole seconds, so a moment inside a busy
    second is ambiguous). By offsets, every change of each named partition up to its offset
    (inclusive); partitions not named contribute nothing.
    """

    source_ts_ms: int | None = None
    offsets: dict[int, int] = field(default_factory=dict)
    binlog: tuple[str, int] | None = None  # (file, position)

    @classmethod
    def parse(cls, text: str) -> AsOf:
        """``FILE:POS`` (a binlog position), ``P:O[,P:O...]`` (partition:offset), a bare offset
        (partition 0), or an ISO-8601 time (UTC when it has no zone)."""
        value = text.strip()
        if value.isdigit():
            return cls(offsets={0: int(value)})
        if _OFFSETS.match(value):
            pairs = [part.split(":") for part in value.split(",")]
            return cls(offsets={int(p): int(o) for p, o in pairs})
        position = _BINLOG_POSITION.match(value)
        if position:
            return cls(binlog=(position["file"], int(position["pos"])))
        source_ts_ms = iso_time_ms(value)
        if source_ts_ms is None:
            raise FinalError(
                f"--as-of {text!r} is neither a time (ISO-8601, e.g. 2026-01-02T03:04:05Z), a "
                "binlog position (FILE:POS, e.g. mariadb-bin.000003:4567) nor offsets "
                "(P:O[,P:O...] or a bare offset of partition 0)"
            )
        return cls(source_ts_ms=source_ts_ms)

    @property
    def label(self) -> str:
        """A name for the rebuild's location, e.g. ``ts=20260102T030405Z``, ``offsets=0-17`` or
        ``binlog=mariadb-bin.000003-4567``."""
        if self.binlog is not None:
            return f"binlog={self.binlog[0]}-{self.binlog[1]}"
        if self.source_ts_ms is not None:
            moment = datetime.fromtimestamp(self.source_ts_ms / 1000, tz=UTC)
            return f"ts={moment:%Y%m%dT%H%M%S}{self.source_ts_ms % 1000:03d}Z"
        return "offsets=" + "_".join(f"{p}-{o}" for p, o in sorted(self.offsets.items()))

    def included(self) -> pl.Expr:
        if self.binlog is not None:
            # In silver's change order (binlake.bronze.layout.CHANGE_ORDER): file name, then pos.
            file, pos = self.binlog
            return (pl.col(SOURCE_FILE) < file) | (
                (pl.col(SOURCE_FILE) == file) & (pl.col(SOURCE_POS) < pos)
            )
        if self.source_ts_ms is not None:
            return pl.col(SOURCE_TS_MS) <= self.source_ts_ms
        return pl.any_horizontal(
            (pl.col(PARTITION) == p) & (pl.col(OFFSET) <= o) for p, o in self.offsets.items()
        )


@dataclass(frozen=True)
class Rebuilt:
    table: SilverDeltaTable
    changes_read: int  # bronze change rows at or before the point in time
    rows: int  # live rows: what `binlake.lake.read_silver` reads, tombstones left out
    tombstones: int  # deleted keys kept as `_deleted` rows (stored, never read as live)


def rebuild_silver(
    bronze: BronzeReader, silver: SilverTables, pii: PiiPolicy, table: str, as_of: AsOf
) -> Rebuilt:
    """Write `table` as of `as_of` to its own rebuild location; refuses to overwrite one."""
    target = silver.rebuild(table, as_of.label)
    if target.exists():
        raise FinalError(
            f"a rebuild of {table} as of {as_of.label} already exists at {target.uri}; "
            "remove it first or read it"
        )
    _refuse_expired_bronze(bronze, table, as_of)
    read = bronze.read_table(table)
    if not read.frame.height:
        raise FinalError(f"bronze holds no change of {table}: nothing to rebuild")
    changes = read.frame.filter(as_of.included())
    if not changes.height:
        raise FinalError(f"bronze holds no change of {table} at or before {as_of.label}")
    # A schema step silver cannot apply exactly (a rename...) is refused when the rebuild
    # reaches past it, as the silver asset refuses it.
    reached = dict(changes.group_by(PARTITION).agg(pl.col(OFFSET).max()).iter_rows())
    entries = [e for e in read.entries if e.first_offset <= reached.get(e.partition, -1)]
    refuse_unhealed_schema_changes(
        bronze, replace(read, entries=entries), completed_resyncs(bronze.storage, table), reached
    )
    merge_changes(
        target,
        table,
        changes,
        read.primary_key,
        ConsumedOffsets(),
        pii,
        column_defaults=read.column_defaults,
        entries=[e for e in entries if e.last_offset <= reached.get(e.partition, -1)],
    )
    live, tombstones = target.count_stored()
    return Rebuilt(target, changes.height, live, tombstones)


def _refuse_expired_bronze(bronze: BronzeReader, table: str, as_of: AsOf) -> None:
    entries = [e for e in bronze.manifest().entries() if e.table == table]
    retention_lines = [e for e in entries if not e.is_file]
    if not retention_lines:
        return
    expired_before = max(hour_end(e.partition_key) for e in retention_lines)
    oldest_ms = min(
        (e.min_source_ts_ms for e in live_entries(entries) if e.min_source_ts_ms is not None),
        default=None,
    )
    holds = (
        "nothing of it any more"
        if oldest_ms is None
        else f"its changes from {datetime.fromtimestamp(oldest_ms / 1000, tz=UTC).isoformat()} on"
    )
    raise FinalError(
        f"bronze of {table} was expired before {expired_before.isoformat()} "
        f"(compactor.bronze_retention_days) and holds {holds}: a rebuild as of {as_of.label} "
        "from bronze alone would miss the expired changes; use silver's Delta time travel"
    )

"""Schema versions of bronze tables: under which version and file schema each change is written.

Schema drift (see `binlake.bronze.schema_drift`): a partition writer keeps per table a schema
version and the table's cumulative schema, resumed from the table's last manifest entry and its
file's footer. An event whose row schema differs is classified against it. An accepted change
(new or dropped column, widened type) and a breaking one (type family change, narrowing, primary
key change) both start a new schema version, so a file holds one schema; an accepted change's
file has the merged schema (dropped columns kept as nulls), a breaking change's file the new
schema as it is, never cast, and the log gets an error naming the column and both types. Files
record the version and a schema fingerprint in their manifest entry.

Like the Kafka Connect storage sinks' schema compatibility handling, `place()` decides without
changing anything, and `begin()` makes the new version current once the writer has rotated the
file of the previous one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from binlake.bronze.manifest import Manifest
from binlake.bronze.partitioner import TOMBSTONE, TRUNCATE
from binlake.bronze.schema_drift import (
    ChangeKind,
    SchemaChange,
    classify,
    fits_within,
    row_schema_of,
)
from binlake.errors import StorageUnavailableError
from binlake.storage import LakeStorage
from cdc.column_defaults import DEFAULT_KEY
from cdc.envelope import ChangeEvent

log = logging.getLogger(__name__)

# Schema version of a file of tombstones whose key columns fit no schema the writer knows (no
# full row of the table seen yet): 0 is "not tracked" in `ManifestEntry.schema_version`.
UNTRACKED = 0
# Placements cached per row schema object before the cache is cleared.
_MAX_PLACEMENTS = 64


@dataclass(frozen=True)
class TableSchema:
    """A table's current schema version and cumulative row schema (None: not known yet)."""

    version: int
    schema: pa.Schema | None
    primary_key: tuple[str, ...]


@dataclass(frozen=True)
class Placement:
    """The schema version and file schema an event's row is written under."""

    version: int
    schema: pa.Schema
    primary_key: tuple[str, ...]
    change: SchemaChange | None = None  # why a new version starts with this event


class SchemaVersionTracker:
    """The schema version of each table one topic-partition writes, and where rows go in them."""

    def __init__(self, topic: str, partition: int, *, storage: LakeStorage, manifest: Manifest):
        self.topic = topic
        self.partition = partition
        self.storage = storage
        self.manifest = manifest
        self._tables: dict[str, TableSchema] = {}  # schema version per table, see _tracked
        # Placements of recently seen row schemas (by identity: decoded events share one schema
        # object per Debezium schema), so a record of a known shape is not classified again.
        self._placements: dict[tuple[int, str], tuple[pa.Schema, tuple[str, ...], Placement]] = {}

    def table_schema(self, table: str) -> TableSchema | None:
        """The schema version and cumulative schema tracked for `table`, if it was seen."""
        return self._tables.get(table)

    def place(self, event: ChangeEvent) -> Placement:
        """The schema version and file schema of `event`'s row; changes nothing.

        A tombstone goes with the table's current schema when its key columns fit it, else into
        a key-only file that is not tracked. Any other row's schema is classified against the
        table's cumulative schema: the same shape keeps the version, anything else starts the
        next one (see `begin`).
        """
        schema = event.row_schema
        cache_key = (id(schema), event.table)
        cached = self._placements.get(cache_key)
        if cached is not None and cached[0] is schema and cached[1] == event.primary_key:
            return cached[2]
        tracked = self._tracked(event.table)
        key = tuple(event.primary_key)
        if event.op == TRUNCATE:
            # A TRUNCATE has no key (Kafka key null) and no row: it belongs to the table's
            # current version, not to a new one with an empty primary key.
            return self._truncate_placement(tracked, schema)
        if event.op == TOMBSTONE:
            if (
                tracked.schema is not None
                and key == tracked.primary_key
                and fits_within(schema, tracked.schema)
            ):
                placement = Placement(tracked.version, tracked.schema, key)
            else:
                placement = Placement(UNTRACKED, schema, key)
        elif tracked.schema is None:
            return Placement(tracked.version + 1, schema, key)
        elif schema is tracked.schema and key == tracked.primary_key and tracked.version:
            placement = Placement(tracked.version, tracked.schema, tracked.primary_key)
        else:
            change = classify(tracked.schema, schema, tracked.primary_key, key)
            if change.kind is not ChangeKind.SAME or tracked.version == UNTRACKED:
                # A new version (also for the same shape under version 0: files written before
                # versions were tracked). Not cached: it is current only once it has begun.
                return Placement(tracked.version + 1, change.schema, key, change)
            placement = Placement(tracked.version, tracked.schema, tracked.primary_key)
        if len(self._placements) >= _MAX_PLACEMENTS:
            self._placements.clear()
        self._placements[cache_key] = (schema, event.primary_key, placement)
        return placement

    @staticmethod
    def _truncate_placement(tracked: TableSchema, schema: pa.Schema) -> Placement:
        """Where a TRUNCATE goes: the current version if the table's columns fit it (all of
        them are null), else, before any row of the table was seen, an untracked file."""
        if tracked.schema is not None and fits_within(schema, tracked.schema):
            return Placement(tracked.version, tracked.schema, tracked.primary_key)
        return Placement(UNTRACKED, schema, tracked.primary_key)

    def begin(self, table: str, placement: Placement, offset: int) -> None:
        """Make `placement`'s version the table's current one if it is new, and say why."""
        tracked = self._tables[table]
        if placement.version == UNTRACKED or placement.version == tracked.version:
            return
        self._tables[table] = TableSchema(
            placement.version, placement.schema, placement.primary_key
        )
        self._placements.clear()
        where = f"{self.topic}[{self.partition}]@{offset}"
        change = placement.change
        if change is None or change.kind is ChangeKind.SAME:
            log.info(
                "%s: %s schema version %d (%d columns)",
                where,
                table,
                placement.version,
                len(placement.schema),
            )
        elif change.kind is ChangeKind.ACCEPTED:
            log.info(
                "%s: %s schema version %d -> %d, accepted (new file, widened schema): %s",
                where,
                table,
                tracked.version,
                placement.version,
                change.describe(),
            )
            for column in change.changes:
                if column.change in ("added", "added_not_null"):
                    # ALTER TABLE fills existing rows with the default without a binlog event;
                    # readers and silver give them the default recorded in the schema.
                    default = placement.schema.field(column.column).metadata or {}
                    log.info(
                        "%s: %s column %r added; rows that existed before hold its default %s",
                        where,
                        table,
                        column.column,
                        default.get(DEFAULT_KEY, b"NULL").decode(errors="replace"),
                    )
        else:
            # Readers must not get these records cast to the old types: they are written as
            # they are, under their own version, and the bronze asset check fails on it.
            for broken in change.breaking:
                log.error(
                    "%s: BREAKING schema change of %s, schema version %d -> %d: %s (column %s, "
                    "old type %s, new type %s). Nothing is cast: the table's new records are "
                    "written with their own types under schema version %d.",
                    where,
                    table,
                    tracked.version,
                    placement.version,
                    broken,
                    broken.column,
                    broken.old_type,
                    broken.new_type,
                    placement.version,
                )

    def _tracked(self, table: str) -> TableSchema:
        """The table's tracked schema; on first use resumed from its last manifest entry."""
        if table not in self._tables:
            self._tables[table] = self._resume(table)
        return self._tables[table]

    def _resume(self, table: str) -> TableSchema:
        """Version and cumulative schema of the newest file of `table` the manifest lists.

        The manifest holds the version; the schema is read from the Parquet footer of the newest
        file of that version still in the lake (a file of the version has the version's
        cumulative schema, dropped columns included), so a lost newest file does not end the
        history while an older file of its version remains.
        """
        try:
            entries = self.manifest.entries_for(table)
        except OSError as exc:
            raise StorageUnavailableError(f"cannot read the manifest: {exc}") from exc
        if not entries:
            return TableSchema(UNTRACKED, None, ())
        # The highest version; among equals the last appended. Files of version 0 were written
        # before versions were tracked: the newest one still tells the table's last shape.
        last = max(enumerate(entries), key=lambda item: (item[1].schema_version, item[0]))[1]
        same_version = [e for e in reversed(entries) if e.schema_version == last.schema_version]
        for candidate in same_version:
            try:
                file_schema = pq.read_schema(
                    self.storage.full_path(candidate.path), filesystem=self.storage.filesystem
                )
            except (FileNotFoundError, pa.ArrowInvalid):  # lost, or cut short: a replay rewrites it
                continue
            except OSError as exc:
                raise StorageUnavailableError(f"cannot read {candidate.path}: {exc}") from exc
            return TableSchema(
                last.schema_version, row_schema_of(file_schema), tuple(last.primary_key)
            )
        # Nothing to compare with: the next row starts a new version (never reuses one).
        log.error(
            "%s: bronze file %s is listed in the manifest but missing or unreadable (and so is "
            "every other file of schema version %d); %s's schema history restarts at version %d",
            self.topic,
            last.path,
            last.schema_version,
            table,
            last.schema_version + 1,
        )
        return TableSchema(last.schema_version, None, tuple(last.primary_key))

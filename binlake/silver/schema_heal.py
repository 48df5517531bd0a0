"""A schema change silver cannot apply exactly heals itself: the table is resynced.

A rename, a narrowing or a primary-key change reaches bronze as a breaking schema step, and
silver refuses to merge it (`binlake.bronze.schema_drift.SchemaNeedsResync`) rather than leave nulls or
wrong values. Re-reading the table with the new schema is what makes silver exact again, so the
first refusal starts that resync (`binlake.silver.resync`) without waiting for a user. The run still
fails, loudly, naming table, columns and types, and so does every run until the resync has
caught up (`binlake.silver.schema_guard.completed_resyncs` then lets the step through).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from binlake.bronze.reader import BronzeRead
from binlake.bronze.schema_drift import SchemaNeedsResync
from binlake.settings import Settings
from binlake.silver.resync import (
    BinlogPosition,
    ResyncState,
    give_up,
    request_resync,
    resync_in_progress,
)


def heal_on_refusal(
    reads: Iterator[BronzeRead], settings: Settings, *, log: Any
) -> Iterator[BronzeRead]:
    """`reads`, passed through; a `SchemaNeedsResync` among them starts a resync of its table
    (unless one is under way) and is raised again, saying which resync will heal it."""
    try:
        yield from reads
    except SchemaNeedsResync as refusal:
        running = resync_in_progress(settings, refusal.table)
        if running is not None and not _can_heal(running, refusal):
            # Asked for before the change: its rows have the old schema, so it can never heal
            # it, and silver (refusing) would never sweep it. It gives way to a new one.
            give_up(settings, running, SUPERSEDED)
            log.warning(
                f"{refusal.table}: resync {running.request.id} began before the schema change "
                f"at {refusal.first_position}; superseded by a new one"
            )
            running = None
        if running is not None:
            detail = f"; resync {running.request.id} is under way ({running.stage})"
        else:
            try:
                request = request_resync(
                    settings, refusal.table, reason=f"schema change: {refusal}"
                )
            except Exception as exc:  # noqa: BLE001 - the refusal is what the run reports
                # e.g. the source or the broker unreachable: the next run tries again
                detail = f"; starting a resync of it failed, the next run tries again: {exc}"
            else:
                detail = (
                    f"; resync {request.id} started automatically, silver merges again once "
                    "it has caught up"
                )
        log.error(f"{refusal}{detail}")
        raise SchemaNeedsResync(
            refusal.table,
            refusal.changes,
            schema_version=refusal.schema_version,
            first_offset=refusal.first_offset,
            detail=detail,
        ) from refusal


SUPERSEDED = "SUPERSEDED"


def _can_heal(running: ResyncState, refusal: SchemaNeedsResync) -> bool:
    """Whether `running` was asked for after the change's first record (unknown: assume so)."""
    if refusal.first_position is None:
        return True
    file, pos = refusal.first_position.rsplit(":", 1)
    return running.request.signal_position > BinlogPosition(file, int(pos))

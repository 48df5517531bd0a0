"""The reconciliation of one silver table with its source table, start to finish.

While the source is busy, silver trails it by the pipeline's delay, so counts may differ by up
to ``silver.reconcile_tolerance`` of the source's rows and the content hash is reported but not
judged. Once the source has been quiet for ``silver.reconcile_quiet_seconds`` (no commit to the
table, by its InnoDB ``UPDATE_TIME``), counts and hashes must be equal. A difference that
persists while the source is quiet is named by column and healed by a resync (`heal`).
The digests themselves are `binlake.silver.reconcile`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import polars as pl

from binlake.errors import BinlakeError
from binlake.settings import Settings
from binlake.silver.pii import PiiPolicy
from binlake.silver.reconcile import (
    DIGEST_MODULUS,
    ComparedColumn,
    compared_columns,
    judge,
    silver_digest,
)
from binlake.silver.resync import request_resync, resync_in_progress


class SourceTables(Protocol):
    """What reconciliation asks of the source (`binlake.source_db.SourceDatabase` and the
    digest of `binlake.silver.reconcile.source_content_digest`)."""

    def column_types(self, table: str) -> list[tuple[str, str, int | None]]: ...

    def last_commit_time(self, table: str) -> datetime | None: ...

    def content_digest(self, table: str, columns: list[ComparedColumn]) -> tuple[int, int]: ...


@dataclass(frozen=True)
class Reconciliation:
    """How silver `table` compares with its source."""

    passed: bool
    reason: str
    silver_rows: int
    source_rows: int
    tolerance_rows: int
    source_quiet: bool
    source_last_commit: datetime | None
    source_digest: int
    silver_digest: int
    compared: list[ComparedColumn]
    excluded: list[str]


def reconcile_with_source(
    source: SourceTables,
    settings: Settings,
    table: str,
    silver: pl.DataFrame,
    now: Callable[[], datetime],
) -> Reconciliation:
    """Compare `silver` (the current state of `table`) with the source table now."""
    pii = PiiPolicy.from_settings(settings.silver)
    source_columns = source.column_types(table)
    masked = pii.masked_columns(table, [name for name, _, _ in source_columns])
    compared, excluded = compared_columns(source_columns, silver, masked)
    commit_before = source.last_commit_time(table)
    source_rows, source_digest = source.content_digest(table, compared)
    commit_after = source.last_commit_time(table)
    quiet = commit_after == commit_before and (
        commit_after is None
        or (now() - commit_after).total_seconds() >= settings.silver.reconcile_quiet_seconds
    )
    lake_digest = silver_digest(silver, compared)
    verdict = judge(
        source_rows=source_rows,
        silver_rows=silver.height,
        source_digest=source_digest,
        lake_digest=lake_digest,
        source_quiet=quiet,
        tolerance=settings.silver.reconcile_tolerance,
    )
    reason = verdict.reason
    if quiet and not verdict.passed and source_rows == silver.height:
        differing = differing_columns(source, table, silver, compared)
        reason += f" in column(s) {', '.join(differing) or '(only in combination)'}"
    if quiet and not verdict.passed:
        # The source has been quiet past the pipeline's delay: the difference persists.
        reason += "; " + heal(settings, table, reason)
    return Reconciliation(
        passed=verdict.passed,
        reason=reason,
        silver_rows=silver.height,
        source_rows=source_rows,
        tolerance_rows=verdict.tolerance_rows,
        source_quiet=quiet,
        source_last_commit=commit_after,
        source_digest=source_digest,
        silver_digest=lake_digest,
        compared=compared,
        excluded=excluded,
    )


def differing_columns(
    source: SourceTables, table: str, silver: pl.DataFrame, compared: list[ComparedColumn]
) -> list[str]:
    """The compared columns whose own digests differ: one digest per column on both sides."""
    return [
        c.name
        for c in compared
        if source.content_digest(table, [c])[1] % DIGEST_MODULUS != silver_digest(silver, [c])
    ]


def heal(settings: Settings, table: str, finding: str) -> str:
    """What the check says (and, with ``silver.auto_resync``, does) about a persisting difference.

    The healing is a resync (``binlake.silver.resync``): the table read again, and the rows silver
    holds that the source lost swept. Never a second one while one of the table is not over.
    """
    command = f"`binlake resync --table {table}`"
    running = resync_in_progress(settings, table)
    if running is not None:
        return f"resync {running.request.id} is in progress ({running.stage})"
    if not settings.silver.auto_resync:
        return f"heal with {command} (or set silver.auto_resync = true)"
    try:
        request = request_resync(settings, table, reason=f"reconciliation: {finding}")
    except BinlakeError as exc:
        return f"could not start a resync ({exc}); heal with {command}"
    return f"resync {request.id} started (silver.auto_resync)"

"""Reconciliation of each silver table with its source table (count and content hash).

While the source is busy, silver trails it by the pipeline's delay, so counts may differ by up
to ``silver.reconcile_tolerance`` of the source's rows and the content hash is reported but not
judged. Once the source has been quiet for ``silver.reconcile_quiet_seconds`` (no commit to the
table, by its InnoDB ``UPDATE_TIME``), counts and hashes must be equal.
"""

from collections.abc import Callable
from datetime import UTC, datetime

import dagster as dg
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
from dagster_defs.automation import CHECK_CONDITION
from dagster_defs.keys import silver_key
from dagster_defs.resources import MySQLSource

RECONCILE_CHECK = "reconciles_with_source"


def differing_columns(
    mysql_source: MySQLSource, table: str, silver: pl.DataFrame, compared: list[ComparedColumn]
) -> list[str]:
    """The compared columns whose own digests differ: one digest per column on both sides."""
    return [
        c.name
        for c in compared
        if mysql_source.content_digest(table, [c])[1] % DIGEST_MODULUS != silver_digest(silver, [c])
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


def build_reconciliation_check(
    table: str, settings: Settings, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> dg.AssetChecksDefinition:
    pii = PiiPolicy.from_settings(settings.silver)
    quiet_seconds = settings.silver.reconcile_quiet_seconds
    tolerance = settings.silver.reconcile_tolerance

    @dg.asset_check(
        asset=silver_key(table),
        name=RECONCILE_CHECK,
        description=f"Silver {table} agrees with the source: row count within "
        f"{tolerance:.1%} while the source is busy; count and content hash equal once it has "
        f"been quiet for {quiet_seconds:g} s. A difference that persists while the source is "
        f"quiet is healed by `binlake resync --table {table}`"
        + (
            ", started by the check itself (silver.auto_resync)."
            if settings.silver.auto_resync
            else "."
        ),
        automation_condition=CHECK_CONDITION,
        blocking=False,
    )
    def _check(silver: pl.DataFrame, mysql_source: MySQLSource) -> dg.AssetCheckResult:
        source_columns = mysql_source.column_types(table)
        masked = pii.masked_columns(table, [name for name, _, _ in source_columns])
        compared, excluded = compared_columns(source_columns, silver, masked)
        commit_before = mysql_source.last_commit_time(table)
        source_rows, source_digest = mysql_source.content_digest(table, compared)
        commit_after = mysql_source.last_commit_time(table)
        quiet = commit_after == commit_before and (
            commit_after is None or (now() - commit_after).total_seconds() >= quiet_seconds
        )
        lake_digest = silver_digest(silver, compared)
        verdict = judge(
            source_rows=source_rows,
            silver_rows=silver.height,
            source_digest=source_digest,
            lake_digest=lake_digest,
            source_quiet=quiet,
            tolerance=tolerance,
        )
        reason = verdict.reason
        if quiet and not verdict.passed and source_rows == silver.height:
            differing = differing_columns(mysql_source, table, silver, compared)
            reason += f" in column(s) {', '.join(differing) or '(only in combination)'}"
        if quiet and not verdict.passed:
            # The source has been quiet past the pipeline's delay: the difference persists.
            reason += "; " + heal(settings, table, reason)
        return dg.AssetCheckResult(
            passed=verdict.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=reason,
            metadata={
                "silver_rows": silver.height,
                "source_rows": source_rows,
                "difference": silver.height - source_rows,
                "tolerance_rows": verdict.tolerance_rows,
                "source_quiet": quiet,
                "source_last_commit": commit_after.isoformat() if commit_after else "unknown",
                "source_digest": f"{source_digest % DIGEST_MODULUS:016x}",
                "silver_digest": f"{lake_digest:016x}",
                "columns_compared": ",".join(c.name for c in compared) or "(none)",
                "columns_not_compared": ",".join(excluded) or "(none)",
            },
        )

    return _check

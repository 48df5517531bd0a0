"""The reconciliation check of each silver table with its source table (count and content
hash): `binlake.silver.reconcile_check` compares, the check reports.
"""

from collections.abc import Callable
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from binlake.settings import Settings
from binlake.silver.reconcile import DIGEST_MODULUS
from binlake.silver.reconcile_check import reconcile_with_source
from dagster_defs.automation import CHECK_CONDITION
from dagster_defs.keys import silver_key
from dagster_defs.resources import MySQLSource

RECONCILE_CHECK = "reconciles_with_source"


def build_reconciliation_check(
    table: str, settings: Settings, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> dg.AssetChecksDefinition:
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
        found = reconcile_with_source(mysql_source, settings, table, silver, now)
        return dg.AssetCheckResult(
            passed=found.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=found.reason,
            metadata={
                "silver_rows": found.silver_rows,
                "source_rows": found.source_rows,
                "difference": found.silver_rows - found.source_rows,
                "tolerance_rows": found.tolerance_rows,
                "source_quiet": found.source_quiet,
                "source_last_commit": found.source_last_commit.isoformat()
                if found.source_last_commit
                else "unknown",
                "source_digest": f"{found.source_digest % DIGEST_MODULUS:016x}",
                "silver_digest": f"{found.silver_digest:016x}",
                "columns_compared": ",".join(c.name for c in found.compared) or "(none)",
                "columns_not_compared": ",".join(found.excluded) or "(none)",
            },
        )

    return _check

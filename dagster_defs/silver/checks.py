"""Reconciliation checks: silver row count against the source's `SELECT COUNT(*)`."""

import dagster as dg
import polars as pl

from dagster_defs.automation import CHECK_CONDITION
from dagster_defs.keys import silver_key
from dagster_defs.resources import MySQLSource

ROW_COUNT_CHECK = "row_count_matches_source"


def build_row_count_check(table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=silver_key(table),
        name=ROW_COUNT_CHECK,
        description=f"Silver {table} has as many rows as the source table right now.",
        automation_condition=CHECK_CONDITION,
        blocking=False,
    )
    def _check(silver: pl.LazyFrame, mysql_source: MySQLSource) -> dg.AssetCheckResult:
        # Lazily loaded: counting rows reads the Parquet footer, not the data.
        silver_rows = int(silver.select(pl.len()).collect().item())
        source_rows = mysql_source.count_rows(table)
        return dg.AssetCheckResult(
            passed=silver_rows == source_rows,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "silver_rows": silver_rows,
                "source_rows": source_rows,
                "difference": silver_rows - source_rows,
            },
        )

    return _check

"""The reconciliation check run once over a small silver table (three orders created, one
deleted) against a fake source holding `source_rows` rows."""

from __future__ import annotations

import dagster as dg

from dagster_defs.keys import silver_key
from dagster_defs.silver.assets import build_silver_asset
from dagster_defs.silver.checks import RECONCILE_CHECK, build_reconciliation_check


def run_check(
    bronze, resources, source_rows: int, commit_age_seconds: float | None = None
) -> dg.AssetCheckEvaluation:
    c = bronze.change
    bronze.write(
        "shop.orders", [c("c", 0, id=1), c("c", 1, id=2), c("c", 2, id=3), c("d", 3, id=3)]
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [
                build_silver_asset("shop.orders", bronze.settings),
                build_reconciliation_check("shop.orders", bronze.settings),
            ],
            resources=resources({"shop.orders": source_rows}, commit_age_seconds),
            instance=instance,
            raise_on_error=False,
        )
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == RECONCILE_CHECK
    assert evaluation.asset_key == silver_key("shop.orders")
    return evaluation

"""Dagster assets materialized in-process for unit tests, in a throwaway instance."""

from __future__ import annotations

from typing import Any

import dagster as dg

from binlake.settings import Settings
from dagster_defs.definitions import build_definitions


def materialize(assets: list[Any], resources: dict[str, Any], **kwargs: Any):
    """`assets` materialized with `resources` in an ephemeral instance (`kwargs`: as
    `dg.materialize` takes them, e.g. `raise_on_error`)."""
    return dg.materialize(
        assets, resources=resources, instance=dg.DagsterInstance.ephemeral(), **kwargs
    )


def materialize_ok(assets: list[Any], resources: dict[str, Any]):
    """As `materialize`, asserting the run succeeded."""
    result = materialize(assets, resources)
    assert result.success
    return result


def evaluate_check(
    settings: Settings, resources: dict[str, Any], check_key: dg.AssetCheckKey
) -> dg.AssetCheckEvaluation:
    """The one evaluation of `check_key` run in Dagster from the code location's definitions."""
    defs = build_definitions(settings)
    result = materialize(
        [*defs.assets, *defs.asset_checks],
        resources,
        selection=dg.AssetSelection.checks(check_key),
    )
    assert result.success  # a failed check is a finding, not a failed run
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation

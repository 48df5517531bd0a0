"""Dagster assets materialized in-process for unit tests, in a throwaway instance."""

from __future__ import annotations

from typing import Any

import dagster as dg


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

"""How binlake declares Dagster definitions: the conventions every domain shares.

Every binlake sensor runs from the moment the code location loads (nobody has to switch it on in
the UI); every operational job (compaction, replay, resync) is one op run alone; the checks of
bronze read the bronze lake and never block what follows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg

from dagster_defs.resources import BronzeLake


def running_sensor(
    *, name: str, interval_seconds: int, description: str, **options: Any
) -> Callable[[Callable[..., Any]], dg.SensorDefinition]:
    """``dg.sensor`` for a sensor running from the start, every `interval_seconds` at most
    (`options`: more ``dg.sensor`` arguments, e.g. its job or asset selection)."""
    return dg.sensor(
        name=name,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
        **options,
    )


def single_op_job(
    op: dg.OpDefinition, *, name: str, tags: Mapping[str, str], description: str
) -> dg.JobDefinition:
    """A job named `name` that runs `op` alone."""

    @dg.job(name=name, tags=dict(tags), description=description)
    def _job() -> None:
        op()

    return _job


def bronze_lake_check(
    *,
    asset: dg.AssetKey,
    name: str,
    description: str,
    automation_condition: dg.AutomationCondition,
    evaluate: Callable[[BronzeLake], dg.AssetCheckResult],
) -> dg.AssetChecksDefinition:
    """A non-blocking check of `asset`, evaluated from the bronze lake by `evaluate`."""

    @dg.asset_check(
        asset=asset,
        name=name,
        description=description,
        automation_condition=automation_condition,
        blocking=False,
    )
    def _check(bronze_lake: BronzeLake) -> dg.AssetCheckResult:
        return evaluate(bronze_lake)

    return _check

"""When silver, gold and the checks run: declarative automation, evaluated by one sensor.

Measured on Dagster 1.13 (see tests/dagster_defs/test_automation.py):

* ``AutomationCondition.eager()`` waits while *any* dependency partition is missing. Silver is
  unpartitioned and depends on every hourly partition of bronze; hours without changes never get
  a bronze file, so plain ``eager()`` would never run silver. Silver drops that clause and
  instead waits until at least one bronze hour was reported (so it does not run on an empty lake
  at the very first tick).
* Gold is partitioned by the hour orders were created and depends on both silver tables and,
  hour by hour, on ``changed_order_hours`` (reported by a sensor for each hour a silver commit
  touched). Only that dependency's updates trigger it (a silver update alone would request
  every hour), and ``in_latest_time_window`` is dropped so a change to an order of any past
  hour recomputes that hour. An hour never reported is missing and is simply not requested: it
  blocks no other hour, as each hour depends only on its own report.
* ``eager()`` ignores whatever happened before its first evaluation; silver and gold also run
  when they were never stored but their inputs are (see ``_or_missing_with_inputs``).
* Each reconciliation check runs when its silver table has updated (usually in the same run).
"""

from __future__ import annotations

import dagster as dg

from binlake.settings import Settings
from dagster_defs.keys import CHANGED_ORDER_HOURS

AUTOMATION_SENSOR_NAME = "binlake_automation"

AC = dg.AutomationCondition


def _or_missing_with_inputs(
    eager: dg.AutomationCondition, inputs_ready: dg.AutomationCondition
) -> dg.AutomationCondition:
    """`eager` or: never stored, its inputs are there, and its last attempt did not fail.

    ``eager()``'s triggers are counted "since last handled" and the first evaluation counts as
    handled, so data reported before the automation sensor's first tick would only be processed
    once more data arrives. This branch runs such an asset at once; a failed attempt is retried
    on the next upstream update (the eager branch), not on every tick.
    """
    missing_with_inputs = (
        AC.missing()
        & inputs_ready
        & ~AC.execution_failed()
        & ~AC.in_progress()
        & ~AC.any_deps_in_progress()
    ).with_label("missing_with_inputs")
    return eager | missing_with_inputs


_ANY_BRONZE_HOUR_REPORTED = AC.any_deps_match(~AC.missing()).with_label("any_bronze_hour_reported")

SILVER_CONDITION: dg.AutomationCondition = _or_missing_with_inputs(
    (AC.eager().without(~AC.any_deps_missing()) & _ANY_BRONZE_HOUR_REPORTED).with_label(
        "eager_over_bronze_hours"
    ),
    _ANY_BRONZE_HOUR_REPORTED,
).with_label("silver")

GOLD_CONDITION: dg.AutomationCondition = _or_missing_with_inputs(
    AC.eager()
    .without(AC.in_latest_time_window())
    .replace(
        "any_deps_updated",
        AC.any_deps_updated().allow(dg.AssetSelection.assets(CHANGED_ORDER_HOURS)),
    )
    .with_label("eager_over_changed_hours"),
    ~AC.any_deps_missing(),
).with_label("gold")

CHECK_CONDITION: dg.AutomationCondition = AC.eager()


def build_automation_sensor(settings: Settings) -> dg.AutomationConditionSensorDefinition:
    """The one sensor evaluating every automation condition of this code location."""
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR_NAME,
        # all() leaves out checks on external assets (bronze), which must run too
        target=dg.AssetSelection.all() | dg.AssetSelection.all_asset_checks(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        # Runs, not backfills: the backfill daemon looks every 30 s, which would be most of
        # gold's delay. Gold's single-run backfill policy still makes one run per range of
        # contiguous hours.
        emit_backfills=False,
        minimum_interval_seconds=settings.dagster.automation_interval_seconds,
        description="Requests silver, gold and checks when their inputs update (eager).",
    )

"""When silver, gold and the checks run: declarative automation, evaluated by one sensor.

Measured on Dagster 1.13 (see tests/dagster_defs/test_automation.py):

* ``AutomationCondition.eager()`` waits while *any* dependency partition is missing. Silver is
  unpartitioned and depends on every hourly partition of bronze; hours without changes never get
  a bronze file, so plain ``eager()`` would never run silver. Gold is partitioned by the hour
  orders were created and depends on both silver tables and, hour by hour, on
  ``changed_order_hours`` (reported by a sensor for each hour a silver commit touched).
* What a tick costs: bronze and ``changed_order_hours`` are external assets, and Dagster finds
  the missing partitions of an external asset one partition at a time. Any clause asking which of
  their partitions are missing costs a tick time in proportion to the hours since
  ``dagster.partitions_start``: with 2024-01-01 (~26k hours) a tick took 2-5 s and commit-to-gold
  p95 went from 18.7 s to 38.7 s (``benchmarks/commit_to_gold.py``). So no condition here asks
  that of them on every tick. Silver and gold run on updates of their inputs (eager's trigger
  without its ``newly_missing`` half, which would also keep every never-reported hour of gold
  pending, and without ``any_deps_missing``); gold counts only updates of ``changed_order_hours``
  (a silver update alone would request every hour), in any hour, however old, and an hour never
  reported is simply never requested: it blocks no other hour.
* ``eager()`` ignores whatever happened before its first evaluation. At that first evaluation
  (also the first after a change of these conditions), silver and gold run where they were never
  stored but their inputs are: the one tick that pays for finding missing partitions. Later, a
  silver table that never ran although bronze exists is requested by ``silver_catch_up``.
* Each reconciliation check runs when its silver table has updated (usually in the same run).
"""

from __future__ import annotations

import dagster as dg

from binlake.settings import Settings
from dagster_defs.keys import CHANGED_ORDER_HOURS

AUTOMATION_SENSOR_NAME = "binlake_automation"

AC = dg.AutomationCondition


def _on_updates(updates: dg.AutomationCondition) -> dg.AutomationCondition:
    """Eager's core: `updates` since the target was last requested or updated, nothing of the
    target or its inputs in progress."""
    return updates.since_last_handled() & ~AC.any_deps_in_progress() & ~AC.in_progress()


def _or_missing_at_first_evaluation(
    on_updates: dg.AutomationCondition, inputs_ready: dg.AutomationCondition
) -> dg.AutomationCondition:
    """`on_updates` or, at the condition's first evaluation: never stored, inputs there."""
    missing_with_inputs = (
        AC.initial_evaluation()  # first: every later tick stops here, at no cost
        & AC.missing()
        & inputs_ready
        & ~AC.in_progress()
        & ~AC.any_deps_in_progress()
    ).with_label("missing_with_inputs_at_first_evaluation")
    return on_updates | missing_with_inputs


SILVER_CONDITION: dg.AutomationCondition = _or_missing_at_first_evaluation(
    _on_updates(AC.any_deps_updated()).with_label("eager_over_bronze_hours"),
    AC.any_deps_match(~AC.missing()).with_label("any_bronze_hour_reported"),
).with_label("silver")

GOLD_CONDITION: dg.AutomationCondition = _or_missing_at_first_evaluation(
    _on_updates(
        AC.any_deps_updated().allow(dg.AssetSelection.assets(CHANGED_ORDER_HOURS))
    ).with_label("eager_over_changed_hours"),
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

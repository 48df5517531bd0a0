"""The maintenance job: deletes old runs and old sensor/schedule ticks from the Dagster instance.

Without it the instance only grows: a bronze manifest sensor ticking every few seconds and a
silver/gold run per bronze update fill PostgreSQL (SQLite locally) with runs, their event logs
and ticks. Each night (``dagster.maintenance_cron``, UTC) ``binlake_maintenance`` deletes what
is older than ``dagster.retention_days``:

* **Runs** in a finished status (SUCCESS, FAILURE, CANCELED) created before the cutoff, with
  ``DagsterInstance.delete_run`` (which also deletes the run's event logs) and their captured
  stdout/stderr (``compute_log_manager.delete_logs``). Queued, starting, started and canceling
  runs are never deleted, however old. Runs are read in pages of ``batch_size``
  (``RunsFilter(created_before=..., statuses=...)``, oldest first).
* **Ticks** of every sensor and schedule the instance holds a state for (``all_instigator_state``)
  whose status is SUCCESS, SKIPPED or FAILURE and whose timestamp is before the cutoff, with
  ``DagsterInstance.purge_ticks``, the call the daemon itself uses for its own tick retention.
  A tick still STARTED is kept, like an unfinished run.

What it does **not** delete, on purpose:

* **Asset events not tied to a run.** The bronze manifest sensor reports every bronze file as an
  ``AssetMaterialization`` stored with run id ``""`` (a runless event). Those events are the
  bronze partition status that silver's automation condition reads ("has any bronze hour been
  reported", "did bronze update"). Dagster 1.13 has no API to delete event logs by age, only
  per run (``delete_events(run_id)``) or per asset (``wipe_assets``, which forgets the asset);
  this job only ever deletes by the id of a stored run, and there is no run ``""``.
* **The newest run of each asset and asset check.** Deleting a run deletes the asset
  materializations it produced. The run that holds an asset's latest materialization,
  observation, failed or planned materialization (``AssetRecord``), or an asset check's latest
  execution, is kept even when older than the cutoff: Dagster's "latest" pointers (what
  ``AutomationCondition.missing()``/``newly_updated()``/``execution_failed()`` read, and what the
  UI shows as the asset's last materialization) then never name a deleted run, e.g. after a week
  without any change in the source. Older materializations of an unpartitioned silver or gold
  asset are history only. For a partitioned asset the run holding each partition's latest
  materialization is kept too (gold's hours are materialized by runs).
* **Automation evaluation records** (``purge_asset_evaluations``): the asset daemon already
  deletes them after 30 days; they are UI history, not state.
* **Ticks of instigators with no stored state**: ``purge_ticks`` needs the instigator's ids,
  which only its state gives. The daemon stores a state before an instigator's first tick.
* **Backfills** (bulk actions): not run-scoped; the lake launches none on its own.

The cutoff is injectable: ``delete_old_runs`` and ``delete_old_ticks`` take it, and
``build_maintenance_job`` takes the clock.
"""

import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from dagster._check import CheckError
from dagster._core.scheduler.instigation import TickStatus

from binlake.settings import Settings

MAINTENANCE_JOB_NAME = "binlake_maintenance"
_PAGE = 1000  # event records fetched per call
MAINTENANCE_SCHEDULE_NAME = "binlake_maintenance_schedule"
# The run coordinator allows one run with this tag at a time (tag_concurrency_limits in
# deploy/dagster/dagster.yaml and the local DAGSTER_HOME/dagster.yaml).
MAINTENANCE_TAG = "binlake/maintenance"

DEFAULT_BATCH_SIZE = 500
DELETABLE_RUN_STATUSES: tuple[dg.DagsterRunStatus, ...] = (
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
)
PURGEABLE_TICK_STATUSES: tuple[TickStatus, ...] = (
    TickStatus.SUCCESS,
    TickStatus.SKIPPED,
    TickStatus.FAILURE,
)

_RUNLESS_RUN_ID = ""  # run id of events reported outside a run (dagster.RUNLESS_RUN_ID)


@dataclass(frozen=True)
class RunDeletion:
    deleted: int  # runs deleted, with their event logs
    kept_latest: int  # old finished runs kept because they hold an asset's or check's latest


def latest_run_ids(
    instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey] = ()
) -> set[str]:
    """Ids of the runs Dagster names as the latest of some asset or asset check."""
    run_ids: set[str] = set()
    for record in instance.get_asset_records():
        entry = record.asset_entry
        run_ids.update(
            run_id
            for run_id in (
                entry.last_run_id,
                entry.last_planned_materialization_run_id,
                *(
                    event.run_id
                    for event in (
                        entry.last_materialization_record,
                        entry.last_observation_record,
                        entry.last_failed_to_materialize_record,
                    )
                    if event is not None
                ),
            )
            if run_id
        )
        run_ids.update(_latest_partition_run_ids(instance, record.asset_entry.asset_key))
    check_keys = list(check_keys)
    if check_keys:
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
        run_ids.update(execution.run_id for execution in latest.values())
    run_ids.discard(_RUNLESS_RUN_ID)
    return run_ids


def _latest_partition_run_ids(instance: dg.DagsterInstance, key: dg.AssetKey) -> set[str]:
    """Runs holding the latest materialization of some partition of `key` (gold's hours are
    materialized by runs; deleting such a run would make its hour look never materialized)."""
    storage_ids = list(
        instance.event_log_storage.get_latest_storage_id_by_partition(
            key, dg.DagsterEventType.ASSET_MATERIALIZATION
        ).values()
    )
    run_ids: set[str] = set()
    for start in range(0, len(storage_ids), _PAGE):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, storage_ids=storage_ids[start : start + _PAGE]),
            limit=_PAGE,
        ).records
        run_ids.update(record.run_id for record in records)
    return run_ids


def delete_old_runs(
    instance: dg.DagsterInstance,
    cutoff: datetime,
    *,
    keep: Collection[str] = (),
    batch_size: int = DEFAULT_BATCH_SIZE,
    log: logging.Logger | None = None,
) -> RunDeletion:
    """Delete the finished runs created before `cutoff`, except those in `keep`.

    Pages are read oldest first with the last run of a page as the cursor. Dagster resolves a
    cursor by looking its run up, so that run is deleted only after the next page was read.
    """
    log = log or logging.getLogger(__name__)
    # Run storage compares created_before, tz dropped, with its naive UTC timestamps.
    cutoff = cutoff.astimezone(UTC)
    filters = dg.RunsFilter(created_before=cutoff, statuses=list(DELETABLE_RUN_STATUSES))
    deleted = kept = 0
    cursor: str | None = None
    pending: str | None = None  # the cursor run, deleted once the next page is read
    while True:
        records = instance.get_run_records(
            filters=filters, limit=batch_size, cursor=cursor, ascending=True
        )
        if pending is not None:
            _delete_run(instance, pending, log)
            deleted += 1
            pending = None
        if not records:
            break
        for record in records:
            run = record.dagster_run
            if run.status not in DELETABLE_RUN_STATUSES:  # the filter's promise, checked again
                continue
            if run.run_id in keep:
                kept += 1
            elif record is records[-1]:
                pending = run.run_id
            else:
                _delete_run(instance, run.run_id, log)
                deleted += 1
        cursor = records[-1].dagster_run.run_id
        log.info(f"runs before {cutoff.isoformat()}: {deleted} deleted so far, {kept} kept")
    return RunDeletion(deleted=deleted, kept_latest=kept)


def _delete_run(instance: dg.DagsterInstance, run_id: str, log: logging.Logger) -> None:
    instance.delete_run(run_id)  # the run and its event logs
    try:
        instance.compute_log_manager.delete_logs(prefix=[run_id])
    except (NotImplementedError, OSError) as exc:
        log.warning(f"run {run_id} deleted; its captured stdout/stderr were not: {exc}")


def delete_old_ticks(
    instance: dg.DagsterInstance,
    cutoff: datetime,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    log: logging.Logger | None = None,
) -> int:
    """Delete finished ticks before `cutoff` of every sensor and schedule; returns how many."""
    log = log or logging.getLogger(__name__)
    before = cutoff.timestamp()
    statuses = list(PURGEABLE_TICK_STATUSES)
    deleted = 0
    for state in instance.all_instigator_state():
        origin_id, selector_id = state.instigator_origin_id, state.selector_id
        count = _count_ticks_before(instance, origin_id, selector_id, before, statuses, batch_size)
        if count:
            instance.purge_ticks(origin_id, selector_id, before=before, tick_statuses=statuses)
            log.info(
                f"{state.instigator_type.value} {state.instigator_name}: {count} ticks deleted"
            )
        deleted += count
    return deleted


def _count_ticks_before(
    instance: dg.DagsterInstance,
    origin_id: str,
    selector_id: str,
    before: float,
    statuses: list[TickStatus],
    batch_size: int,
) -> int:
    """How many ticks `purge_ticks(before=before)` deletes, counted in pages (newest first).

    A full page counts its ticks newer than its oldest timestamp, then every tick at exactly
    that timestamp (one more query: ticks sharing it may straddle the page boundary), and the
    next page starts below it. Storage keeps microseconds, so ``after=t - 1 µs`` and
    ``before=t + 1 µs`` select the ticks at ``t``.
    """
    count = 0
    while True:
        page = instance.get_tick_summaries(
            origin_id, selector_id, before=before, limit=batch_size, statuses=statuses
        )
        if len(page) < batch_size:
            return count + len(page)
        oldest = page[-1].timestamp
        count += sum(1 for tick in page if tick.timestamp > oldest)
        count += len(
            instance.get_tick_summaries(
                origin_id,
                selector_id,
                after=oldest - 1e-6,
                before=oldest + 1e-6,
                statuses=statuses,
            )
        )
        before = oldest


def _asset_check_keys(context: dg.OpExecutionContext) -> list[dg.AssetCheckKey]:
    """Every asset check of the code location the run was loaded from.

    A run launched by the daemon or the UI is loaded from the code location, which holds the
    checks. ``execute_in_process`` loads none: then only each asset's latest run is kept.
    """
    try:
        repository = context.repository_def
    except CheckError:
        context.log.warning(
            "no code location loaded (execute_in_process): asset checks are unknown, so only "
            "the latest run of each asset is kept, not that of each check"
        )
        return []
    return list(repository.asset_graph.asset_check_keys)


class MaintenanceConfig(dg.Config):
    batch_size: int = DEFAULT_BATCH_SIZE


def build_maintenance_job(
    settings: Settings, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> dg.JobDefinition:
    """The ``binlake_maintenance`` job with the retention of `settings`, evaluated at `now()`."""
    days = settings.dagster.retention_days
    retention = timedelta(days=days)

    @dg.op(
        name="delete_old_runs_and_ticks",
        description=f"Deletes finished runs and ticks older than {days:g} days "
        "(dagster.retention_days), keeping each asset's and check's latest run.",
    )
    def delete_old_runs_and_ticks(
        context: dg.OpExecutionContext, config: MaintenanceConfig
    ) -> dg.Output[dict[str, Any]]:
        if config.batch_size < 1:
            raise dg.Failure(f"batch_size must be at least 1, not {config.batch_size}")
        cutoff = now() - retention
        instance = context.instance
        keep = latest_run_ids(instance, _asset_check_keys(context))
        runs = delete_old_runs(
            instance, cutoff, keep=keep, batch_size=config.batch_size, log=context.log
        )
        ticks = delete_old_ticks(instance, cutoff, batch_size=config.batch_size, log=context.log)
        context.log.info(
            f"deleted {runs.deleted} runs and {ticks} ticks created before {cutoff.isoformat()}; "
            f"kept {runs.kept_latest} older runs holding an asset's or check's latest event"
        )
        counts = {
            "runs_deleted": runs.deleted,
            "runs_kept_latest": runs.kept_latest,
            "ticks_deleted": ticks,
        }
        return dg.Output(
            counts,
            metadata={**counts, "cutoff": dg.MetadataValue.timestamp(cutoff)},
        )

    @dg.job(
        name=MAINTENANCE_JOB_NAME,
        tags={MAINTENANCE_TAG: "true"},
        executor_def=dg.in_process_executor,
        description="Deletes Dagster runs (with their event logs) and sensor/schedule ticks older "
        "than dagster.retention_days. Never deletes unfinished runs or runless asset events.",
    )
    def binlake_maintenance() -> None:
        delete_old_runs_and_ticks()

    return binlake_maintenance

"""The maintenance job against a real (temporary, SQLite) Dagster instance.

Runs are backdated with ``run_storage.add_historical_run`` (an explicit create timestamp) and
ticks with their own timestamps, so the job runs with the real clock; the paging helpers are
also called directly with an injected cutoff.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    ScheduleInstigatorData,
    SensorInstigatorData,
    TickData,
    TickStatus,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.utils import make_new_run_id
from dagster._utils.error import SerializableErrorInfo

from dagster_defs.definitions import build_definitions
from dagster_defs.keys import GOLD_ORDERS_BY_HOUR_STATUS, bronze_key, silver_key
from dagster_defs.maintenance.definitions import build_maintenance_definitions
from dagster_defs.maintenance.jobs import (
    MAINTENANCE_JOB_NAME,
    MAINTENANCE_SCHEDULE_NAME,
    MAINTENANCE_TAG,
    delete_old_runs,
    delete_old_ticks,
)

REPO = Path(__file__).resolve().parents[3]
OP = "delete_old_runs_and_ticks"
NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=10)  # older than the default retention of 7 days
RECENT = NOW - timedelta(days=1)

S = dg.DagsterRunStatus
# Where the daemon would have loaded the code location from: names sensors, schedules and jobs.
REPOSITORY = RemoteRepositoryOrigin(
    ManagedGrpcPythonEnvCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable, module_name="dagster_defs.definitions", attribute="defs"
        )
    ),
    "__repository__",
)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def add_run(
    instance: dg.DagsterInstance, status: dg.DagsterRunStatus, created: datetime, job: str = "j"
) -> str:
    """A run created at `created`, with one event log entry and captured stdout."""
    run = dg.DagsterRun(
        job_name=job,
        run_id=make_new_run_id(),
        status=status,
        remote_job_origin=REPOSITORY.get_job_origin(job),
    )
    instance.run_storage.add_historical_run(run, created)
    instance.report_engine_event("step output", dagster_run=run)
    with instance.compute_log_manager.capture_logs([run.run_id, "compute_logs", "step"]):
        print(f"stdout of {run.run_id}")
    return run.run_id


def add_materialization(
    instance: dg.DagsterInstance, run_id: str, key: dg.AssetKey, at: datetime, partition=None
) -> None:
    event = DagsterEvent(
        DagsterEventType.ASSET_MATERIALIZATION.value,
        "j",
        event_specific_data=StepMaterializationData(
            dg.AssetMaterialization(key, partition=partition)
        ),
    )
    instance.report_dagster_event(event, run_id=run_id, timestamp=at.timestamp())


def add_check_evaluation(
    instance: dg.DagsterInstance, run_id: str, key: dg.AssetCheckKey, at: datetime
) -> None:
    evaluation = dg.AssetCheckEvaluation(asset_key=key.asset_key, check_name=key.name, passed=True)
    event = DagsterEvent(
        DagsterEventType.ASSET_CHECK_EVALUATION.value, "j", event_specific_data=evaluation
    )
    instance.report_dagster_event(event, run_id=run_id, timestamp=at.timestamp())


def instigator(instance: dg.DagsterInstance, name: str, kind: InstigatorType) -> InstigatorState:
    data = (
        ScheduleInstigatorData("17 3 * * *", start_timestamp=None)
        if kind == InstigatorType.SCHEDULE
        else SensorInstigatorData(min_interval=2)
    )
    state = InstigatorState(
        REPOSITORY.get_instigator_origin(name), kind, InstigatorStatus.DECLARED_IN_CODE, data
    )
    instance.add_instigator_state(state)
    return state


def add_tick(
    instance: dg.DagsterInstance, state: InstigatorState, status: TickStatus, at: datetime
) -> int:
    tick = instance.create_tick(
        TickData(
            instigator_origin_id=state.instigator_origin_id,
            instigator_name=state.instigator_name,
            instigator_type=state.instigator_type,
            status=status,
            timestamp=at.timestamp(),
            run_ids=[],
            error=(
                SerializableErrorInfo("sensor raised", stack=[], cls_name="ValueError")
                if status == TickStatus.FAILURE
                else None
            ),
            selector_id=state.selector_id,
        )
    )
    return tick.tick_id


def tick_ids(instance: dg.DagsterInstance, state: InstigatorState) -> set[int]:
    return {t.tick_id for t in instance.get_ticks(state.instigator_origin_id, state.selector_id)}


def run_ids(instance: dg.DagsterInstance) -> set[str]:
    return {record.dagster_run.run_id for record in instance.get_run_records()}


def has_stdout(instance: dg.DagsterInstance, run_id: str) -> bool:
    data = instance.compute_log_manager.get_log_data([run_id, "compute_logs", "step"])
    return bool(data.stdout)


def run_maintenance(
    defs: dg.Definitions, instance: dg.DagsterInstance, batch_size: int
) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(MAINTENANCE_JOB_NAME)
    return job.execute_in_process(
        instance=instance,
        run_config={"ops": {OP: {"config": {"batch_size": batch_size}}}},
    )


@pytest.mark.parametrize("batch_size", [1, 2, 500])
def test_deletes_old_finished_runs_and_ticks_only(settings, instance, batch_size):
    old_finished = {
        add_run(instance, S.SUCCESS, OLD),
        add_run(instance, S.FAILURE, OLD - timedelta(hours=1)),
        add_run(instance, S.CANCELED, OLD - timedelta(hours=2)),
    }
    # An earlier silver materialization is history; the run of the latest one stays.
    superseded = add_run(instance, S.SUCCESS, OLD - timedelta(days=3))
    add_materialization(instance, superseded, silver_key("shop.orders"), OLD - timedelta(days=3))
    latest_silver = add_run(instance, S.SUCCESS, OLD - timedelta(days=2))
    add_materialization(instance, latest_silver, silver_key("shop.orders"), OLD - timedelta(days=2))
    old_finished.add(superseded)
    unfinished_old = {
        add_run(instance, status, OLD - timedelta(minutes=i))
        for i, status in enumerate([S.QUEUED, S.NOT_STARTED, S.STARTING, S.STARTED, S.CANCELING])
    }
    recent = {add_run(instance, S.SUCCESS, RECENT), add_run(instance, S.FAILURE, RECENT)}
    # What the manifest sensor reports: runless bronze materializations, never deleted.
    add_materialization(instance, "", bronze_key("shop.orders"), OLD, "2024-06-01-10:00")

    sensor = instigator(instance, "bronze_manifest_sensor", InstigatorType.SENSOR)
    schedule = instigator(instance, MAINTENANCE_SCHEDULE_NAME, InstigatorType.SCHEDULE)
    old_ticks = {
        add_tick(instance, sensor, TickStatus.SUCCESS, OLD),
        add_tick(instance, sensor, TickStatus.SKIPPED, OLD - timedelta(seconds=2)),
        add_tick(instance, sensor, TickStatus.FAILURE, OLD - timedelta(seconds=4)),
        add_tick(instance, schedule, TickStatus.SUCCESS, OLD),
        add_tick(instance, schedule, TickStatus.FAILURE, OLD - timedelta(days=1)),
    }
    kept_sensor_ticks = {
        add_tick(instance, sensor, TickStatus.STARTED, OLD - timedelta(seconds=6)),
        add_tick(instance, sensor, TickStatus.SKIPPED, RECENT),
    }
    kept_schedule_ticks = {add_tick(instance, schedule, TickStatus.SUCCESS, RECENT)}
    before = run_ids(instance)

    result = run_maintenance(build_definitions(settings), instance, batch_size)

    assert result.success
    remaining = run_ids(instance)
    assert remaining == (before - old_finished) | {result.run_id}
    assert {latest_silver} | unfinished_old | recent <= remaining
    for run_id in old_finished:
        assert instance.all_logs(run_id) == []  # the run's event logs went with it
        assert not has_stdout(instance, run_id)
    for run_id in unfinished_old | recent | {latest_silver}:
        assert instance.all_logs(run_id), run_id
        assert has_stdout(instance, run_id)
    latest = instance.get_latest_materialization_event(silver_key("shop.orders"))
    assert latest is not None and latest.run_id == latest_silver
    bronze = instance.fetch_materializations(bronze_key("shop.orders"), limit=10).records
    assert [(r.run_id, r.partition_key) for r in bronze] == [("", "2024-06-01-10:00")]
    assert tick_ids(instance, sensor) == kept_sensor_ticks
    assert tick_ids(instance, schedule) == kept_schedule_ticks
    assert not old_ticks & (tick_ids(instance, sensor) | tick_ids(instance, schedule))

    counts = {"runs_deleted": 4, "runs_kept_latest": 1, "ticks_deleted": 5}
    assert result.output_for_node(OP) == counts
    [output] = [
        e
        for e in result.all_events
        if e.event_type == DagsterEventType.STEP_OUTPUT and e.step_key == OP
    ]
    metadata = output.step_output_data.metadata
    assert {k: metadata[k].value for k in counts} == counts
    assert metadata["cutoff"].value == pytest.approx(
        (datetime.now(UTC) - timedelta(days=settings.dagster.retention_days)).timestamp(), abs=60
    )

    again = run_maintenance(build_definitions(settings), instance, batch_size)
    assert again.output_for_node(OP) == {
        "runs_deleted": 0,
        "runs_kept_latest": 1,
        "ticks_deleted": 0,
    }


def test_run_loaded_from_the_code_location_keeps_each_checks_latest_run(settings, instance):
    """As the daemon launches it: loaded from the module, so the code location's checks are
    known."""
    graph = build_definitions(settings).resolve_asset_graph()
    check = min(graph.asset_check_keys, key=lambda key: key.to_user_string())  # any of them
    superseded = add_run(instance, S.SUCCESS, OLD - timedelta(days=1))
    add_check_evaluation(instance, superseded, check, OLD - timedelta(days=1))
    latest_check = add_run(instance, S.FAILURE, OLD)
    add_check_evaluation(instance, latest_check, check, OLD)
    job = ReconstructableRepository.for_module(
        "dagster_defs.definitions", "defs", working_directory=str(REPO)
    ).get_reconstructable_job(MAINTENANCE_JOB_NAME)
    with dg.execute_job(
        job, instance=instance, run_config={"ops": {OP: {"config": {"batch_size": 1}}}}
    ) as result:
        assert result.success
        assert result.output_for_node(OP) == {
            "runs_deleted": 1,
            "runs_kept_latest": 1,
            "ticks_deleted": 0,
        }
    assert latest_check in run_ids(instance)
    assert superseded not in run_ids(instance)


def test_retention_comes_from_settings(settings, instance):
    three_days = add_run(instance, S.SUCCESS, NOW - timedelta(days=3))
    one_day = add_run(instance, S.SUCCESS, NOW - timedelta(days=1))
    short = settings.model_copy(
        update={"dagster": settings.dagster.model_copy(update={"retention_days": 2.0})}
    )
    result = run_maintenance(build_maintenance_definitions(short), instance, 500)
    assert result.output_for_node(OP)["runs_deleted"] == 1
    assert three_days not in run_ids(instance)
    assert one_day in run_ids(instance)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 100])
def test_delete_old_runs_pages_through_every_batch(instance, batch_size):
    cutoff = NOW - timedelta(days=7)
    old = [add_run(instance, S.SUCCESS, OLD + timedelta(minutes=i)) for i in range(7)]
    # Kept runs at page ends too (a page's last run is the cursor of the next page).
    keep = {old[1], old[2], old[5]}
    new = add_run(instance, S.SUCCESS, RECENT)
    deletion = delete_old_runs(instance, cutoff, keep=keep, batch_size=batch_size)
    assert (deletion.deleted, deletion.kept_latest) == (4, 3)
    assert run_ids(instance) == keep | {new}


def test_tick_count_is_exact_when_ticks_share_a_timestamp(instance):
    sensor = instigator(instance, "bronze_manifest_sensor", InstigatorType.SENSOR)
    ties = {add_tick(instance, sensor, TickStatus.SKIPPED, OLD) for _ in range(5)}
    older = {
        add_tick(instance, sensor, TickStatus.SUCCESS, OLD - timedelta(seconds=i))
        for i in range(1, 4)
    }
    kept = {add_tick(instance, sensor, TickStatus.SUCCESS, RECENT)}
    assert len(ties | older) == 8
    assert delete_old_ticks(instance, NOW - timedelta(days=7), batch_size=2) == 8
    assert tick_ids(instance, sensor) == kept


def test_schedule_and_job_are_in_the_code_location(settings):
    nightly = settings.model_copy(
        update={"dagster": settings.dagster.model_copy(update={"maintenance_cron": "5 4 * * *"})}
    )
    defs = build_definitions(nightly)
    dg.Definitions.validate_loadable(defs)
    schedule = defs.resolve_schedule_def(MAINTENANCE_SCHEDULE_NAME)
    assert schedule.cron_schedule == "5 4 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == MAINTENANCE_JOB_NAME
    job = defs.resolve_job_def(MAINTENANCE_JOB_NAME)
    assert job.tags[MAINTENANCE_TAG] == "true"
    default = build_definitions(settings).resolve_schedule_def(MAINTENANCE_SCHEDULE_NAME)
    assert default.cron_schedule == settings.dagster.maintenance_cron == "17 3 * * *"


def test_the_latest_run_of_each_partition_is_kept(settings, instance):
    """Gold's hours are materialized by runs: each hour's latest run stays, however old."""
    gold = GOLD_ORDERS_BY_HOUR_STATUS
    ten_first = add_run(instance, S.SUCCESS, OLD - timedelta(days=3))
    add_materialization(instance, ten_first, gold, OLD - timedelta(days=3), "2024-06-01-10:00")
    eleven = add_run(instance, S.SUCCESS, OLD - timedelta(days=2))
    add_materialization(instance, eleven, gold, OLD - timedelta(days=2), "2024-06-01-11:00")
    ten_again = add_run(instance, S.SUCCESS, OLD - timedelta(days=1))
    add_materialization(instance, ten_again, gold, OLD - timedelta(days=1), "2024-06-01-10:00")

    result = run_maintenance(build_definitions(settings), instance, batch_size=500)

    assert result.success
    assert run_ids(instance) - {result.run_id} == {eleven, ten_again}

"""The connector health state machine, tick by tick with a fake clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cdc.connect_client import ConnectorStatus, TaskStatus
from cdc.connector_health import (
    CONNECT_FAILURE_REPORT_LAG_SECONDS,
    Action,
    HealthPolicy,
    HealthState,
    Observation,
    Phase,
    decide,
    find_record_too_large,
    summarize_trace,
)
from tests.support.connect import TRACE

POLICY = HealthPolicy(
    backoff_seconds=10,
    backoff_max_seconds=35,
    restarts_before_alert=2,
    repeat_seconds=600,
    recovery_seconds=60,
    failure_report_lag_seconds=0,  # Connect's late FAILED is replayed on its own below
)


def running() -> Observation:
    return Observation("c", "RUNNING", (TaskStatus(0, "RUNNING", "w"),))


def task_failed(trace: str = TRACE) -> Observation:
    return Observation("c", "RUNNING", (TaskStatus(0, "FAILED", "w", trace),))


def test_backoff_doubles_up_to_the_maximum():
    assert [POLICY.backoff(n) for n in range(5)] == [10, 20, 35, 35, 35]
    assert POLICY.alert_after_seconds == 30
    assert HealthPolicy(backoff_seconds=1, backoff_max_seconds=5).backoff(10_000) == 5


def test_healthy_stays_healthy():
    decision = decide(HealthState(), running(), 100.0, POLICY)
    assert decision.actions == (Action.NOTHING,)
    assert decision.state.phase == Phase.HEALTHY and not decision.capture_stopped
    assert decision.state.last_checked_at == 100.0


def test_failed_task_restarts_with_backoff_alerts_then_recovers():
    """The whole episode: 1st failure seen at t=0, restarts at 10, 40 (20 s after failing
    again), an alert when the 2nd restart did not help, a repeat after 600 s, recovery."""
    state = HealthState()
    log: list[tuple[float, tuple[Action, ...]]] = []

    def tick(now: float, observed: Observation) -> None:
        nonlocal state
        decision = decide(state, observed, now, POLICY)
        state = decision.state
        log.append((now, decision.actions))

    tick(0, task_failed())
    assert state.phase == Phase.FAILED and state.stopped_since == 0
    assert state.failed_units == ("task 0",)
    assert state.last_error == summarize_trace(TRACE)
    tick(5, task_failed())  # backoff: 10 s
    tick(10, task_failed())  # restart #1
    assert state.phase == Phase.RESTARTED and state.restarts == 1
    tick(12, task_failed())  # the status still says FAILED right after the restart
    assert state.phase == Phase.RESTARTED
    tick(16, running())  # RUNNING after a restart is probation, not recovery
    assert state.phase == Phase.RESTARTED
    tick(20, task_failed())  # the restart did not help: next in 20 s
    assert state.phase == Phase.FAILED and state.next_restart_at == 40
    tick(40, task_failed())  # restart #2
    tick(60, task_failed())  # 2 restarts did not help: alert; next restart at 95
    assert state.alerted_at == 60 and state.alerts == 1
    tick(95, task_failed())  # restart #3, no second alert
    tick(120, task_failed())
    tick(660, task_failed())  # restart #4 (backoff 35 s) and the repeat of the alert
    tick(700, running())
    tick(719, running())  # 59 s after restart #4: still on probation
    tick(720, running())  # 60 s: recovered
    assert log == [
        (0, (Action.WAIT,)),
        (5, (Action.WAIT,)),
        (10, (Action.RESTART,)),
        (12, (Action.WAIT,)),
        (16, (Action.WAIT,)),
        (20, (Action.WAIT,)),
        (40, (Action.RESTART,)),
        (60, (Action.ALERT, Action.WAIT)),
        (95, (Action.RESTART,)),
        (120, (Action.WAIT,)),
        (660, (Action.ALERT, Action.RESTART)),
        (700, (Action.WAIT,)),
        (719, (Action.WAIT,)),
        (720, (Action.RECOVERED,)),
    ]
    assert state == HealthState(last_checked_at=720, last_observed=running().describe())


# Measured on Kafka Connect 4.3.2 + Debezium MariaDB 3.5.0, exactly.once.support=required:
# GET /connectors/<name>/status polled every 0.25 s around two restarts of a task killed by a
# record over max.request.size (restart at 0 s; relative times of each change of the status).
# The task died 2.9 s after each restart (Connect log: "failed to send record to ..." then "Task
# threw an uncaught and unrecoverable exception"), but stayed RUNNING in the status until its
# transactional producer's close had waited out Connect's 30 s timeout.
EOS_TRACE = (
    "org.apache.kafka.common.KafkaException: Cannot execute transactional method because we "
    "are in an error state\n"
    "\tat org.apache.kafka.connect.runtime.ExactlyOnceWorkerSourceTask.commitTransaction"
    "(ExactlyOnceWorkerSourceTask.java:302)\n"
    "Caused by: org.apache.kafka.common.errors.RecordTooLargeException: The message is 1503131 "
    "bytes when serialized which is larger than 1114112, which is the value of the "
    "max.request.size configuration.\n"
)
CONNECT_43_AFTER_RESTART = [  # (seconds after the restart request, task 0 state)
    (0.38, "RESTARTING"),
    (1.74, "RUNNING"),  # task dead from 2.9 s on
    (33.66, "FAILED"),
]


def test_connect_43_eos_task_reported_running_after_it_died_is_not_a_recovery():
    """Replays the measured status sequence, ticking every 2 s with the integration test's
    policy (backoff 2 s doubling to 8 s, alert after 2 restarts, recovery 20 s): each restart
    that did not help is counted, in one episode, and the alert comes after the 2nd."""
    policy = HealthPolicy(
        backoff_seconds=2,
        backoff_max_seconds=8,
        restarts_before_alert=2,
        repeat_seconds=3600,
        recovery_seconds=20,
    )
    assert policy.failure_report_lag_seconds == CONNECT_FAILURE_REPORT_LAG_SECONDS
    state = HealthState()
    now = 0.0
    restart_at: float | None = None
    decisions = []
    while now < 300 and not any(d.alert for d in decisions):
        if restart_at is None:
            task = "FAILED"  # the first failure: FAILED in the status within a second
        else:
            since = now - restart_at
            task = next(
                (s for at, s in reversed(CONNECT_43_AFTER_RESTART) if since >= at), "FAILED"
            )
        trace = EOS_TRACE if task == "FAILED" else None
        observed = Observation("c", "RUNNING", (TaskStatus(0, task, "w", trace),))
        decision = decide(state, observed, now, policy)
        decisions.append(decision)
        assert not decision.recovered, f"at {now} s: {decision.reason}"
        assert decision.state.phase != Phase.HEALTHY and decision.state.stopped_since == 0
        if decision.restart:
            restart_at = now
        state = decision.state
        now += 2
    [alerting] = [d for d in decisions if d.alert]
    assert alerting.state.restarts >= 2
    assert "2 restart(s) so far" in alerting.reason
    assert [d.state.restarts for d in decisions if d.restart] == [1, 2]
    # Without the lag the same sequence reads as a recovery between two restarts (the bug).
    no_lag = replace(policy, failure_report_lag_seconds=0)
    restarted = decide(
        decide(HealthState(), task_failed(EOS_TRACE), 0, no_lag).state,
        task_failed(EOS_TRACE),
        2,
        no_lag,
    ).state
    assert decide(restarted, running(), 2 + 20, no_lag).recovered
    assert not decide(restarted, running(), 2 + 20, policy).recovered
    assert decide(restarted, running(), 2 + 20 + 35, policy).recovered


def test_recovered_decision_carries_the_episode_that_ended():
    state = decide(HealthState(), task_failed(), 0, POLICY).state
    state = decide(state, task_failed(), 10, POLICY).state  # restart
    decision = decide(state, running(), 70, POLICY)
    assert decision.recovered and decision.ended is not None
    assert (decision.ended.stopped_since, decision.ended.restarts) == (0, 1)
    assert "recovered after 1 restart(s)" in decision.reason


def test_alert_at_first_failure_when_no_restarts_are_wanted():
    policy = HealthPolicy(backoff_seconds=10, restarts_before_alert=0)
    decision = decide(HealthState(), task_failed(), 0, policy)
    assert decision.actions == (Action.ALERT, Action.WAIT)


def test_restarted_by_someone_else_is_on_probation():
    state = decide(HealthState(), task_failed(), 0, POLICY).state
    decision = decide(state, running(), 3, POLICY)
    assert decision.actions == (Action.WAIT,) and decision.state.phase == Phase.RESTARTED
    assert decide(decision.state, running(), 63, POLICY).recovered


def test_failed_connector_is_restarted_too():
    observed = Observation("c", "FAILED", (), trace="java.lang.IllegalStateException: boom")
    state = decide(HealthState(), observed, 0, POLICY).state
    decision = decide(state, observed, 10, POLICY)
    assert decision.restart and decision.state.failed_units == ("connector",)
    assert decision.state.last_error == "java.lang.IllegalStateException: boom"


def test_unreachable_connect_alerts_after_the_restart_budget_and_is_red():
    down = Observation.unreachable("c", "Kafka Connect GET /connectors/c/status failed")
    state = HealthState()
    for now in (0, 10, 20):
        decision = decide(state, down, now, POLICY)
        state = decision.state
        assert decision.actions == (Action.WAIT,) and decision.capture_stopped
    decision = decide(state, down, 30, POLICY)  # alert_after_seconds = 10 + 20
    assert decision.actions == (Action.ALERT, Action.WAIT)
    assert "nothing binlake can restart" in decision.reason
    assert decision.state.last_error == "Kafka Connect GET /connectors/c/status failed"


def test_missing_connector_is_a_stopped_capture():
    decision = decide(HealthState(), Observation.missing("c"), 0, POLICY)
    assert decision.capture_stopped and not decision.restart
    assert "no connector named 'c'" in decision.reason


@pytest.mark.parametrize("state", ["PAUSED", "STOPPED", "UNASSIGNED"])
def test_paused_or_moving_is_not_a_failure(state: str):
    observed = Observation("c", state, (TaskStatus(0, state, "w"),))
    decision = decide(HealthState(), observed, 0, POLICY)
    assert decision.actions == (Action.NOTHING,) and not decision.capture_stopped
    failing = decide(HealthState(), task_failed(), 0, POLICY).state
    kept = decide(failing, observed, 5, POLICY)
    assert kept.actions == (Action.WAIT,) and kept.state.stopped_since == 0


def test_observation_of_a_connect_status():
    status = ConnectorStatus.from_json(
        {
            "name": "c",
            "connector": {"state": "RUNNING", "worker_id": "w"},
            "tasks": [
                {"id": 0, "state": "RUNNING", "worker_id": "w"},
                {"id": 1, "state": "FAILED", "worker_id": "w", "trace": TRACE},
            ],
        }
    )
    observed = Observation.of(status)
    assert observed.failed_units == ["task 1"] and observed.failed_tasks() == [1]
    assert observed.describe() == "connector c RUNNING, task 0 RUNNING, task 1 FAILED"
    assert observed.failure_trace() == TRACE


def test_state_round_trips_through_json_and_tolerates_garbage():
    state = decide(HealthState(), task_failed(), 0, POLICY).state
    assert HealthState.from_json(state.to_json()) == state
    assert HealthState.from_json(None) == HealthState()
    assert HealthState.from_json("not json") == HealthState()
    assert HealthState.from_json('{"phase": "nonsense"}') == HealthState()
    assert HealthState.from_json('{"phase": "failed", "future_field": 1}').phase == Phase.FAILED


def test_trace_summary_keeps_exception_and_causes_only():
    assert summarize_trace(TRACE) == (
        "org.apache.kafka.connect.errors.ConnectException: Unrecoverable exception from "
        "producer send callback\n"
        "Caused by: org.apache.kafka.common.errors.RecordTooLargeException: The message is "
        "1502821 bytes when serialized which is larger than 1048576, which is the value of the "
        "max.request.size configuration."
    )
    assert len(summarize_trace("x" * 5000)) == 400
    assert summarize_trace("") == ""


def test_record_too_large_is_found_with_its_sizes():
    found = find_record_too_large(TRACE)
    assert found is not None
    assert (found.record_bytes, found.limit_bytes, found.limit_name) == (
        1502821,
        1048576,
        "max.request.size",
    )
    broker = find_record_too_large(
        "Caused by: org.apache.kafka.common.errors.RecordTooLargeException: The request "
        "included a message larger than the max message size the server will accept."
    )
    assert broker is not None and broker.record_bytes is None
    assert find_record_too_large("java.lang.NullPointerException") is None
    assert find_record_too_large(None) is None

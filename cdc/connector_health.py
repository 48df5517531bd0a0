"""Connector health: what to do about a Debezium connector, from what Kafka Connect reports.

An explicit state machine, free of Dagster and of I/O so it can be tested tick by tick with a
fake clock. Each health check observes the connector (``Observation``), and ``decide`` turns the
previous ``HealthState`` (JSON, kept between checks) and the observation into a ``Decision``:
the actions to take now and the next state.

Phases of one failure episode::

    HEALTHY --(connector or a task FAILED, Connect unreachable, connector missing)--> FAILED
    FAILED  --(backoff elapsed: restart)--> RESTARTED
    RESTARTED --(FAILED again: the restart did not help; backoff doubles)--> FAILED
    RESTARTED --(reported RUNNING for probation_seconds after the restart)--> HEALTHY  [RECOVERED]

A task killed by a record it cannot send comes back RUNNING after a restart and fails again seconds
later on the same record, so RUNNING right after a restart is not yet recovery: it must last
``recovery_seconds``, plus ``failure_report_lag_seconds``: Connect reports a dead task FAILED only
once the task has closed its producer, and an exactly-once task's transactional producer killed
after a restart waits out Connect's 30 s close timeout first (measured on Connect 4.3: RUNNING for
31-34 s after a restart although the task died 2-3 s after it). Without that lag a task that dies
after every restart would look recovered between two restarts, and the restarts that did not help
would never add up to an alert. After ``restarts_before_alert`` restarts that did not help an alert
is raised (and repeated every ``repeat_seconds`` while unresolved); restarts go on with backoff. A
connector that cannot be restarted (Connect unreachable, connector not registered) alerts once it
has been down for as long as the restarts before an alert would have taken.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from binlake.settings import Settings

from .connect_client import FAILED, ConnectorStatus, TaskStatus, all_running

PAUSED_STATES = frozenset({"PAUSED", "STOPPED"})
UNREACHABLE = "UNREACHABLE"  # pseudo-state: Connect did not answer
MISSING = "MISSING"  # pseudo-state: Connect does not know the connector
SUMMARY_LINE_CHARS = 400
# Connect's status still says FAILED for a moment after it accepted a restart (under 1 s
# measured, then RESTARTING): FAILED this soon after a restart is the old failure.
RESTART_VISIBLE_SECONDS = 5.0
# How late Connect may report a dead task FAILED: AbstractWorkerSourceTask closes its producer
# with a 30 s timeout before the task's FAILED status is written, and a transactional producer
# left in an error state takes all of it (measured: FAILED 30.7 s after the task died). Plus a
# margin for the status write and a busy worker.
CONNECT_FAILURE_REPORT_LAG_SECONDS = 35.0


class Phase(StrEnum):
    HEALTHY = "healthy"
    FAILED = "failed"  # seen stopped; a restart is due once the backoff has elapsed
    RESTARTED = "restarted"  # restarted; waiting to see whether it stays RUNNING


class Action(StrEnum):
    NOTHING = "nothing"
    WAIT = "wait"  # failing, restart not due yet (backoff), or restarted and on probation
    RESTART = "restart"
    ALERT = "alert"
    RECOVERED = "recovered"


@dataclass(frozen=True)
class HealthPolicy:
    backoff_seconds: float = 10.0
    backoff_max_seconds: float = 300.0
    restarts_before_alert: int = 3
    repeat_seconds: float = 3600.0
    recovery_seconds: float = 60.0
    failure_report_lag_seconds: float = CONNECT_FAILURE_REPORT_LAG_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings) -> HealthPolicy:
        connect = settings.connect
        return cls(
            backoff_seconds=connect.restart_backoff_seconds,
            backoff_max_seconds=connect.restart_backoff_max_seconds,
            restarts_before_alert=connect.restarts_before_alert,
            repeat_seconds=settings.alerts.repeat_minutes * 60.0,
            recovery_seconds=connect.restart_recovery_seconds,
        )

    def backoff(self, restarts_done: int) -> float:
        """Wait before the next restart when `restarts_done` restarts did not help."""
        return min(self.backoff_seconds * 2.0 ** min(restarts_done, 62), self.backoff_max_seconds)

    @property
    def probation_seconds(self) -> float:
        """How long a restarted connector must be seen RUNNING to count as recovered: it ran
        `recovery_seconds` only if a death in that time would have been reported by now."""
        return self.recovery_seconds + self.failure_report_lag_seconds

    @property
    def alert_after_seconds(self) -> float:
        """How long the restarts before an alert take; the grace of a connector that cannot be
        restarted."""
        return sum(self.backoff(n) for n in range(self.restarts_before_alert))


@dataclass(frozen=True)
class Observation:
    """The connector's state as Connect reported it, or why there is no report."""

    connector: str
    state: str  # the connector's state, UNREACHABLE or MISSING
    tasks: tuple[TaskStatus, ...] = ()
    trace: str | None = None  # the connector's own trace
    error: str | None = None  # why Connect gave no status

    @classmethod
    def of(cls, status: ConnectorStatus) -> Observation:
        return cls(status.name, status.state, status.tasks, status.trace)

    @classmethod
    def unreachable(cls, connector: str, error: str) -> Observation:
        return cls(connector, UNREACHABLE, error=error)

    @classmethod
    def missing(cls, connector: str) -> Observation:
        return cls(connector, MISSING, error=f"Kafka Connect has no connector named {connector!r}")

    @property
    def failed_units(self) -> list[str]:
        """What is FAILED: "connector" and/or "task <id>"."""
        units = ["connector"] if self.state == FAILED else []
        return units + [f"task {task.id}" for task in self.tasks if task.state == FAILED]

    @property
    def restartable(self) -> bool:
        return bool(self.failed_units)

    @property
    def capture_stopped(self) -> bool:
        """Capture is stopped by a failure (not by an operator's pause)."""
        return self.restartable or self.state in (UNREACHABLE, MISSING)

    @property
    def running(self) -> bool:
        return all_running(self.state, self.tasks)

    @property
    def paused(self) -> bool:
        return self.state in PAUSED_STATES

    def failure_trace(self) -> str | None:
        if self.state == FAILED and self.trace:
            return self.trace
        return next((t.trace for t in self.tasks if t.state == FAILED and t.trace), None)

    def failed_tasks(self) -> list[int]:
        return [task.id for task in self.tasks if task.state == FAILED]

    def describe(self) -> str:
        """E.g. "connector binlake-mysql RUNNING, task 0 FAILED"."""
        if self.state in (UNREACHABLE, MISSING):
            return f"connector {self.connector}: {self.error}"
        tasks = ", ".join(f"task {t.id} {t.state}" for t in self.tasks) or "no tasks"
        return f"connector {self.connector} {self.state}, {tasks}"

    def error_summary(self) -> str | None:
        trace = self.failure_trace()
        if trace:
            return summarize_trace(trace)
        return self.error


@dataclass(frozen=True)
class HealthState:
    """What the health check remembers between ticks (JSON)."""

    phase: Phase = Phase.HEALTHY
    stopped_since: float | None = None  # first seen stopped in this episode (epoch s)
    restarts: int = 0  # restarts done in this episode
    last_restart_at: float | None = None
    next_restart_at: float | None = None
    alerted_at: float | None = None  # last alert of this episode
    alerts: int = 0
    failed_units: tuple[str, ...] = ()
    last_error: str | None = None  # summary of the newest failure trace
    diagnosis: str | None = None  # filled in once per episode by whoever can diagnose
    last_checked_at: float | None = None
    last_observed: str | None = None  # Observation.describe() of the last check

    def to_json(self) -> str:
        body = asdict(self)
        body["phase"] = self.phase.value
        body["failed_units"] = list(self.failed_units)
        return json.dumps(body, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> HealthState:
        """The stored state; a missing or unreadable one starts HEALTHY (nothing to resume)."""
        if not text:
            return cls()
        try:
            body: Mapping[str, Any] = json.loads(text)
            known = set(cls.__dataclass_fields__)
            values = {k: v for k, v in body.items() if k in known}
            values["phase"] = Phase(values.get("phase", Phase.HEALTHY))
            values["failed_units"] = tuple(values.get("failed_units") or ())
            return cls(**values)
        except (ValueError, TypeError):
            return cls()

    def stopped_for(self, now: float) -> float | None:
        return None if self.stopped_since is None else max(0.0, now - self.stopped_since)


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    state: HealthState
    reason: str
    capture_stopped: bool
    observation: Observation
    # The episode that just ended (for the RECOVERED message).
    ended: HealthState | None = field(default=None)

    @property
    def restart(self) -> bool:
        return Action.RESTART in self.actions

    @property
    def alert(self) -> bool:
        return Action.ALERT in self.actions

    @property
    def recovered(self) -> bool:
        return Action.RECOVERED in self.actions


@dataclass(frozen=True)
class _Check:
    """One health check: the state before it, what Connect reported, when, under which policy."""

    previous: HealthState
    observed: Observation
    now: float
    policy: HealthPolicy

    @property
    def checked(self) -> dict[str, Any]:
        """What every next state records of this check."""
        return {"last_checked_at": self.now, "last_observed": self.observed.describe()}

    def unchanged(self, action: Action, reason: str, *, capture_stopped: bool) -> Decision:
        """A decision that leaves the episode as it is, only noting this check."""
        return Decision(
            (action,),
            replace(self.previous, **self.checked),
            reason,
            capture_stopped=capture_stopped,
            observation=self.observed,
        )


def decide(
    previous: HealthState, observed: Observation, now: float, policy: HealthPolicy
) -> Decision:
    """The next state and the actions to take now (pure; `now` is epoch seconds)."""
    check = _Check(previous, observed, now, policy)
    if observed.running:
        return _on_running(check)
    if not observed.capture_stopped:
        # PAUSED/STOPPED by an operator, or UNASSIGNED/RESTARTING while Connect moves tasks:
        # nothing to restart; a failure episode in progress stays open.
        what = "paused by an operator" if observed.paused else "in transition"
        action = Action.NOTHING if previous.phase == Phase.HEALTHY else Action.WAIT
        return check.unchanged(action, f"{observed.describe()}: {what}", capture_stopped=False)
    if (
        previous.phase == Phase.RESTARTED
        and observed.restartable
        and previous.last_restart_at is not None
        and now - previous.last_restart_at < RESTART_VISIBLE_SECONDS
    ):
        return check.unchanged(
            Action.WAIT,
            f"{observed.describe()}: restart #{previous.restarts} at "
            f"{iso(previous.last_restart_at)} not visible in the status yet",
            capture_stopped=True,
        )
    return _on_stopped(check)


def _on_running(check: _Check) -> Decision:
    previous, observed, now, policy = check.previous, check.observed, check.now, check.policy
    if previous.phase == Phase.HEALTHY:
        return check.unchanged(Action.NOTHING, observed.describe(), capture_stopped=False)
    if previous.phase == Phase.FAILED:
        # Restarted by someone else (an operator, a worker restart): on probation as if by us.
        state = replace(
            previous,
            phase=Phase.RESTARTED,
            last_restart_at=now,
            next_restart_at=None,
            **check.checked,
        )
        return Decision(
            (Action.WAIT,),
            state,
            f"{observed.describe()}: RUNNING again without a restart by binlake; recovered once "
            f"it has been reported RUNNING for {policy.probation_seconds:g} s",
            capture_stopped=False,
            observation=observed,
        )
    restarted_at = previous.last_restart_at if previous.last_restart_at is not None else now
    if now - restarted_at < policy.probation_seconds:
        return check.unchanged(
            Action.WAIT,
            f"{observed.describe()} since the restart at {iso(restarted_at)}; recovered once it "
            f"has been reported RUNNING for {policy.probation_seconds:g} s (Connect reports a "
            f"task's death up to {policy.failure_report_lag_seconds:g} s late)",
            capture_stopped=False,
        )
    return Decision(
        (Action.RECOVERED,),
        HealthState(**check.checked),
        f"{observed.describe()}: recovered after {previous.restarts} restart(s); capture was "
        f"stopped from {iso(previous.stopped_since)}",
        capture_stopped=False,
        observation=observed,
        ended=previous,
    )


def _on_stopped(check: _Check) -> Decision:
    previous, observed, now, policy = check.previous, check.observed, check.now, check.policy
    state = replace(
        previous,
        failed_units=tuple(observed.failed_units),
        last_error=observed.error_summary() or previous.last_error,
        **check.checked,
    )
    if previous.phase == Phase.HEALTHY:
        state = replace(
            state,
            phase=Phase.FAILED,
            stopped_since=now,
            restarts=0,
            alerts=0,
            alerted_at=None,
            diagnosis=None,
            next_restart_at=now + policy.backoff(0),
        )
    elif previous.phase == Phase.RESTARTED:  # the restart did not help
        state = replace(
            state, phase=Phase.FAILED, next_restart_at=now + policy.backoff(previous.restarts)
        )
    actions: list[Action] = []
    if _alert_due(state, observed, now, policy):
        actions.append(Action.ALERT)
        state = replace(state, alerted_at=now, alerts=state.alerts + 1)
    next_restart = state.next_restart_at if state.next_restart_at is not None else now
    if observed.restartable and now >= next_restart:
        actions.append(Action.RESTART)
        state = replace(
            state,
            phase=Phase.RESTARTED,
            restarts=state.restarts + 1,
            last_restart_at=now,
            next_restart_at=None,
        )
        plan = f"restart #{state.restarts} now"
    elif observed.restartable:
        actions.append(Action.WAIT)
        plan = f"restart #{state.restarts + 1} at {iso(next_restart)} (backoff)"
    else:
        actions.append(Action.WAIT)
        plan = "nothing binlake can restart"
    reason = (
        f"capture stopped since {iso(state.stopped_since)}: {observed.describe()}"
        f"{': ' + state.last_error if state.last_error else ''}; "
        f"{state.restarts if Action.RESTART not in actions else state.restarts - 1} restart(s) "
        f"so far, {plan}"
    )
    return Decision(tuple(actions), state, reason, capture_stopped=True, observation=observed)


def _alert_due(state: HealthState, observed: Observation, now: float, policy: HealthPolicy) -> bool:
    if state.alerted_at is not None:
        return now - state.alerted_at >= policy.repeat_seconds
    if observed.restartable:
        return state.restarts >= policy.restarts_before_alert
    since = state.stopped_since if state.stopped_since is not None else now
    return now - since >= policy.alert_after_seconds


# -- traces ---------------------------------------------------------------------------------------


def summarize_trace(trace: str) -> str:
    """The exception line and each 'Caused by:' line of a Java stack trace, without frames."""
    lines = [line.strip() for line in trace.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    kept = [lines[0]] + [line for line in lines[1:] if line.startswith("Caused by:")]
    return "\n".join(_clip(line) for line in kept)


def _clip(line: str) -> str:
    return line if len(line) <= SUMMARY_LINE_CHARS else line[: SUMMARY_LINE_CHARS - 3] + "..."


_TOO_LARGE = re.compile(
    r"RecordTooLargeException: The message is (\d+) bytes when serialized which is larger "
    r"than (\d+), which is the value of the ([\w.]+) configuration"
)


@dataclass(frozen=True)
class RecordTooLarge:
    """A producer refused a record: its size and the limit, when the trace says them."""

    record_bytes: int | None
    limit_bytes: int | None
    limit_name: str | None


def find_record_too_large(trace: str | None) -> RecordTooLarge | None:
    """The RecordTooLargeException in a trace, or None if the failure is something else."""
    if not trace or "RecordTooLargeException" not in trace:
        return None
    match = _TOO_LARGE.search(trace)
    if match is None:  # e.g. the broker's "larger than the max message size the server accepts"
        return RecordTooLarge(None, None, None)
    return RecordTooLarge(int(match.group(1)), int(match.group(2)), match.group(3))


def iso(epoch_seconds: float | None) -> str:
    if epoch_seconds is None:
        return "unknown"
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")

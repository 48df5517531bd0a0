"""One health check of the Debezium connector: observe it, decide (``connector_health.decide``),
restart, diagnose and alert. The Dagster sensor runs one per tick; it keeps ``HealthState``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from binlake.alerts import Alerter
from binlake.errors import ConnectError
from binlake.settings import Settings

from .connect_client import ConnectClient, ConnectHTTPError
from .connector_health import (
    Decision,
    HealthPolicy,
    HealthState,
    Observation,
    decide,
    find_record_too_large,
    iso,
)
from .oversized_record import diagnose_record_too_large

log = logging.getLogger(__name__)

# A health check must not hang a sensor tick on a Connect worker that is down.
CONNECT_RETRY_SECONDS = 5.0


def local_connect_log(settings: Settings) -> Path | None:
    """The Connect worker's log written by the local stack (its supervisor's `logs/connect.log`);
    None elsewhere: in production the worker's log is not on the Dagster host."""
    if settings.environment != "local":
        return None
    path = settings.state_dir.resolve() / "logs" / "connect.log"
    return path if path.is_file() else None


def observe(connect: ConnectClient, connector: str) -> Observation:
    """The connector's status; Connect unreachable or not knowing it are observations too."""
    try:
        return Observation.of(connect.get_status(connector))
    except ConnectHTTPError as exc:
        if exc.status_code == 404:
            return Observation.missing(connector)
        return Observation.unreachable(connector, str(exc))


@dataclass(frozen=True)
class HealthTick:
    decision: Decision
    state: HealthState
    alerts_sent: list[str] = field(default_factory=list)
    restart_error: str | None = None

    @property
    def capture_stopped(self) -> bool:
        return self.decision.capture_stopped

    def problem(self) -> str:
        """Why capture is stopped, for the failing sensor tick."""
        text = self.decision.reason
        if self.restart_error:
            text += f"\nThe restart failed: {self.restart_error}"
        if self.state.diagnosis:
            text += f"\n{self.state.diagnosis}"
        return text


class ConnectorHealthWatch:
    def __init__(
        self,
        settings: Settings,
        *,
        connect: ConnectClient,
        alerter: Alerter,
        clock: Callable[[], float] = time.time,
        connect_log: Path | None = None,
    ):
        self.settings = settings
        self.connector = settings.connect.connector_name
        self.connect = connect
        self.alerter = alerter
        self.clock = clock
        self.connect_log = connect_log
        self.policy = HealthPolicy.from_settings(settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectorHealthWatch:
        return cls(
            settings,
            connect=ConnectClient(settings.connect.url, retry_for_s=CONNECT_RETRY_SECONDS),
            alerter=Alerter.from_settings(settings),
            connect_log=local_connect_log(settings),
        )

    def observe(self) -> Observation:
        return observe(self.connect, self.connector)

    def tick(self, previous: HealthState) -> HealthTick:
        observed = self.observe()
        now = self.clock()
        decision = decide(previous, observed, now, self.policy)
        state = decision.state
        if decision.capture_stopped and state.diagnosis is None:
            state = replace(state, diagnosis=self.diagnose(observed))
        sent: list[str] = []
        if decision.alert:
            text = self.failure_text(state, observed, now, restarting=decision.restart)
            if self.alerter.send(text):
                sent.append(text)
        if decision.recovered and decision.ended is not None and decision.ended.alerted_at:
            text = self.recovered_text(decision.ended, observed, now)
            if self.alerter.send(text):
                sent.append(text)
        restart_error = None
        if decision.restart:
            try:
                self.connect.restart_failed(self.connector)
                log.info("restarted failed parts of %s (%s)", self.connector, observed.describe())
            except ConnectError as exc:
                restart_error = str(exc)
                log.warning("restart of %s failed: %s", self.connector, exc)
        return HealthTick(decision, state, sent, restart_error)

    def diagnose(self, observed: Observation) -> str | None:
        """What is known beyond the trace: for a record too large, which table, key and size."""
        too_large = find_record_too_large(observed.failure_trace())
        if too_large is None:
            return None
        failed = observed.failed_tasks()
        try:
            diagnosis = diagnose_record_too_large(
                self.settings,
                too_large,
                connect=self.connect,
                task_id=failed[0] if failed else None,
                connect_log=self.connect_log,
            )
        except Exception as exc:  # a failed diagnosis must not hide the alert
            log.exception("diagnosing the too-large record failed")
            return f"A change record is too large; finding its table and key failed: {exc!r}."
        return diagnosis.text(self.settings)

    def failure_text(
        self, state: HealthState, observed: Observation, now: float, *, restarting: bool
    ) -> str:
        stopped = state.stopped_for(now) or 0.0
        # A restart decided in the same check is not one that did not help (yet).
        failed_restarts = state.restarts - 1 if restarting else state.restarts
        repeat = "still stopped" if state.alerts > 1 else "stopped"
        restarts = (
            f"{failed_restarts} restart(s) did not help"
            if observed.restartable
            else "binlake cannot restart it"
        )
        headline = (
            f"binlake: capture {repeat}: {observed.describe()}. First seen at "
            f"{iso(state.stopped_since)} ({stopped:.0f} s ago); {restarts}; restarts go on "
            "with backoff."
        )
        lines = [headline]
        if state.last_error:
            lines.append(f"Error: {state.last_error}")
        if state.diagnosis:
            lines.append(state.diagnosis)
        return "\n".join(lines)

    def recovered_text(self, ended: HealthState, observed: Observation, now: float) -> str:
        return (
            f"binlake: capture recovered: {observed.describe()}. It was stopped from "
            f"{iso(ended.stopped_since)} (first seen) for about {ended.stopped_for(now) or 0:.0f} "
            f"s; {ended.restarts} restart(s)."
        )

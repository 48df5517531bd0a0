"""Process supervision by supervisord: one program per component, one log file each.

supervisord owns every component process and stops each by its PID (and its process group, so
Dagster's code servers and run workers go too). `binlake down` stops the programs in stages (each
stage's programs at once, a stage only once the one before has exited), then asks supervisord to
shut down and waits for its own PID to exit; nothing is ever killed by name. supervisord's own
ordered shutdown would do the same one program at a time, about a second per program apart.

Each start of supervisord begins fresh logs: the previous run's are moved to logs/previous/.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from binlake.errors import RetriableError


@dataclass(frozen=True)
class Program:
    """One supervised component."""

    name: str
    command: list[str]
    directory: Path | None = None
    environment: dict[str, str] = field(default_factory=dict)
    stop_signal: str = "TERM"
    stop_wait_seconds: int = 20
    # supervisord stops programs by descending priority, each stopped before the next: later
    # components (which depend on earlier ones) get higher numbers and stop first.
    priority: int = 999


# supervisord's states of a program that has a process, or is about to.
_ALIVE = ("STARTING", "RUNNING", "BACKOFF", "STOPPING")
PREVIOUS_LOGS = "previous"


@dataclass(frozen=True)
class ProgramState:
    name: str
    state: str  # RUNNING, STOPPED, FATAL, EXITED, STARTING, ...
    pid: int
    uptime_s: float
    log_file: str


class Supervisor:
    def __init__(self, state_dir: Path):
        self.state_dir = state_dir.resolve()
        self.config_file = self.state_dir / "supervisord.conf"
        self.socket = self.state_dir / "supervisor.sock"
        self.pid_file = self.state_dir / "supervisord.pid"
        self.log_dir = self.state_dir / "logs"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def write_config(self, programs: list[Program]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "[unix_http_server]",
            f"file={self.socket}",
            "chmod=0700",
            "",
            "[supervisord]",
            f"logfile={self.log_file('supervisord')}",
            f"pidfile={self.pid_file}",
            f"directory={self.state_dir}",
            f"childlogdir={self.log_dir}",
            "nodaemon=false",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{self.socket}",
            "",
        ]
        for program in programs:
            lines += [
                f"[program:{program.name}]",
                "command=" + " ".join(_quote(part) for part in program.command),
                f"directory={program.directory or self.state_dir}",
                "autostart=false",
                "autorestart=unexpected",
                "startsecs=1",
                "startretries=2",
                f"priority={program.priority}",
                f"stopsignal={program.stop_signal}",
                f"stopwaitsecs={program.stop_wait_seconds}",
                "stopasgroup=true",
                "killasgroup=true",
                "redirect_stderr=true",
                f"stdout_logfile={self.log_file(program.name)}",
                "stdout_logfile_maxbytes=50MB",
                "stdout_logfile_backups=2",
            ]
            if program.environment:
                env = ",".join(f'{k}="{_escape(v)}"' for k, v in program.environment.items())
                lines.append(f"environment={env}")
            lines.append("")
        self.config_file.write_text("\n".join(lines))

    def pid(self) -> int | None:
        """PID of this state directory's supervisord, or None.

        A pid file can outlive its process (reboot, OOM kill) and the PID be reused; the PID
        counts only if that process is supervisord running our config file.
        """
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        ours = (
            any(b"supervisord" in part for part in cmdline)
            and str(self.config_file).encode() in cmdline
        )
        return pid if ours else None

    def is_running(self) -> bool:
        if self.pid() is None:
            return False
        try:
            self._rpc().supervisor.getState()
            return True
        except (OSError, xmlrpc.client.Fault):
            return False

    def start_daemon(self, environment: dict[str, str]) -> None:
        """Start supervisord with `environment` added to ours; children inherit it."""
        if self.is_running():
            self._rpc().supervisor.reloadConfig()
            self._add_new_programs()
            return
        self.set_previous_logs_aside()
        env = {**os.environ, **environment}
        subprocess.run(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.config_file)],
            env=env,
            check=True,
        )
        deadline = time.monotonic() + 15
        while not self.is_running():
            if time.monotonic() > deadline:
                raise RetriableError(
                    f"supervisord did not start; see {self.log_file('supervisord')}"
                )
            time.sleep(0.1)

    def set_previous_logs_aside(self) -> Path | None:
        """Move the logs of the previous run to logs/previous/ (replacing the run before it),
        so that a run's logs start empty; the folder they went to, or None if there were none."""
        logs = [path for path in self.log_dir.glob("*.log*") if path.is_file()]
        if not logs:
            return None
        previous = self.log_dir / PREVIOUS_LOGS
        shutil.rmtree(previous, ignore_errors=True)
        previous.mkdir(parents=True)
        for path in logs:
            path.rename(previous / path.name)
        return previous

    def _add_new_programs(self) -> None:
        added, changed, removed = self._rpc().supervisor.reloadConfig()[0]
        for name in removed + changed:
            with contextlib.suppress(xmlrpc.client.Fault):  # already stopped or gone
                self._rpc().supervisor.stopProcessGroup(name)
            self._rpc().supervisor.removeProcessGroup(name)
        for name in added + changed:
            self._rpc().supervisor.addProcessGroup(name)

    def start(self, name: str) -> None:
        info = self._rpc().supervisor.getProcessInfo(name)
        if info["statename"] in ("RUNNING", "STARTING"):
            return
        try:
            self._rpc().supervisor.startProcess(name, True)
        except xmlrpc.client.Fault as fault:
            raise RetriableError(
                f"{name} failed to start ({fault.faultString}); see {self.log_file(name)}"
            ) from fault

    def is_alive(self, name: str) -> bool:
        info = self._rpc().supervisor.getProcessInfo(name)
        return info["statename"] in ("RUNNING", "STARTING")

    def stop(self, names: list[str], timeout_s: float = 90) -> list[str]:
        """Stop the named programs at once and wait until each has exited (supervisord sends
        SIGKILL to the process group of one still alive after its stopwaitsecs); returns the
        ones that were running. Programs not configured are skipped."""
        rpc = self._rpc().supervisor
        configured = {info["name"]: info["statename"] for info in rpc.getAllProcessInfo()}
        stopping = [name for name in names if configured.get(name) in _ALIVE]
        for name in stopping:
            with contextlib.suppress(xmlrpc.client.Fault):  # exited meanwhile: NOT_RUNNING
                rpc.stopProcess(name, False)
        deadline = time.monotonic() + timeout_s
        while any(rpc.getProcessInfo(name)["statename"] in _ALIVE for name in stopping):
            if time.monotonic() > deadline:
                raise RetriableError(
                    f"{', '.join(stopping)} did not stop within {timeout_s:.0f} s; see "
                    f"{self.log_file('supervisord')}"
                )
            time.sleep(0.05)
        return stopping

    def states(self) -> list[ProgramState]:
        if not self.is_running():
            return []
        return [
            ProgramState(
                name=info["name"],
                state=info["statename"],
                pid=info["pid"],
                uptime_s=max(0, info["now"] - info["start"]) if info["pid"] else 0.0,
                log_file=info["stdout_logfile"],
            )
            for info in self._rpc().supervisor.getAllProcessInfo()
        ]

    def shutdown(
        self,
        stages: list[list[str]] | None = None,
        timeout_s: float = 90,
        on_stopped: Callable[[list[str], float], None] = lambda names, seconds: None,
    ) -> bool:
        """Stop the programs stage by stage (`stages`: names, first stage first; programs in no
        stage go with the first), then supervisord; returns False if nothing was running.
        `on_stopped(names, seconds)` after each stage that stopped something.

        Without stages supervisord's own shutdown stops one program at a time by descending
        priority. If supervisord does not exit within `timeout_s`, it and each child's process
        group are killed.
        """
        pid = self.pid()
        if pid is None:
            return False
        children = [state.pid for state in self.states() if state.pid]
        deadline = time.monotonic() + timeout_s
        try:
            if stages:
                listed = {name for stage in stages for name in stage}
                unlisted = [s.name for s in self.states() if s.name not in listed]
                for number, stage in enumerate(stages):
                    names = [*unlisted, *stage] if number == 0 else list(stage)
                    began = time.monotonic()
                    stopped = self.stop(names, timeout_s=max(1.0, deadline - time.monotonic()))
                    if stopped:
                        on_stopped(stopped, time.monotonic() - began)
            self._rpc().supervisor.shutdown()
        except (OSError, xmlrpc.client.Fault, RetriableError):
            os.kill(pid, signal.SIGTERM)
            deadline = max(deadline, time.monotonic() + 30)  # its own shutdown, then kills
        while self.pid() is not None:
            if time.monotonic() > deadline:
                # supervisord is stuck: stop it and each child's process group ourselves
                # (supervisord started every child as a group leader).
                os.kill(pid, signal.SIGKILL)
                for child in children:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(child, signal.SIGKILL)
                break
            time.sleep(0.05)
        return True

    def _rpc(self) -> xmlrpc.client.ServerProxy:
        transport = SupervisorTransport(None, None, serverurl=f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def _quote(part: str) -> str:
    # supervisord splits `command` with shlex; '%' starts its own %(name)s expansions.
    return shlex.quote(part).replace("%", "%%")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")

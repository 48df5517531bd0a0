import configparser
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from binlake.local_stack.supervisor import PREVIOUS_LOGS, Program, Supervisor


def test_config_gives_each_program_its_own_log_and_group_stop(tmp_path) -> None:
    supervisor = Supervisor(tmp_path)
    supervisor.write_config(
        [
            Program("db", ["/usr/sbin/mariadbd", "--defaults-file=/x/my.cnf"]),
            Program(
                "broker",
                ["kafka", "--url", "100%"],
                stop_signal="KILL",
                environment={"A": 'say "hi"'},
                priority=110,
            ),
        ]
    )
    config = configparser.RawConfigParser()
    config.read(supervisor.config_file)
    db = config["program:db"]
    assert db["command"] == "/usr/sbin/mariadbd --defaults-file=/x/my.cnf"
    assert db["stdout_logfile"] == str(tmp_path / "logs" / "db.log")
    assert db["autostart"] == "false"
    assert db["stopasgroup"] == db["killasgroup"] == "true"
    broker = config["program:broker"]
    assert broker["stopsignal"] == "KILL"
    assert broker["command"] == "kafka --url 100%%"  # '%' escaped for supervisord's expansion
    # supervisord's shutdown stops by descending priority: the broker before the database
    assert (broker["priority"], db["priority"]) == ("110", "999")
    assert broker["environment"] == 'A="say \\"hi\\""'


def test_nothing_running_means_no_pid_and_nothing_to_stop(tmp_path) -> None:
    supervisor = Supervisor(tmp_path)
    assert supervisor.pid() is None
    assert not supervisor.is_running()
    assert supervisor.shutdown() is False
    assert supervisor.states() == []


def test_a_stale_pid_file_naming_another_process_is_not_ours(tmp_path) -> None:
    import os

    supervisor = Supervisor(tmp_path)
    supervisor.pid_file.write_text(str(os.getpid()))  # a live process, but not supervisord
    assert supervisor.pid() is None
    assert supervisor.shutdown() is False


SLEEPER = """\
import signal, sys, time
name, record = sys.argv[1:]
print(name, "started", flush=True)
def stop(*_):
    with open(record, "a") as out:
        out.write(name + "\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    time.sleep(0.05)
"""


def sleeper(name: str, record: Path) -> Program:
    """A program that prints its name, and on SIGTERM appends it to `record` and exits."""
    script = record.parent / "sleeper.py"
    script.write_text(SLEEPER)
    return Program(name, [sys.executable, str(script), name, str(record)])


@pytest.fixture
def supervisor(tmp_path) -> Iterator[Supervisor]:
    supervisor = Supervisor(tmp_path / "s")
    try:
        yield supervisor
    finally:
        supervisor.shutdown()


def test_shutdown_stops_stage_after_stage_and_unlisted_programs_first(supervisor, tmp_path):
    record = tmp_path / "stopped.txt"
    names = ["worker", "daemon", "webserver", "db", "added-later"]
    supervisor.write_config([sleeper(name, record) for name in names])
    supervisor.start_daemon({})
    for name in names:
        supervisor.start(name)
    reported = []

    assert supervisor.shutdown(
        [["worker"], ["daemon", "webserver"], ["db"]],
        on_stopped=lambda stopped, seconds: reported.append(sorted(stopped)),
    )

    assert reported == [["added-later", "worker"], ["daemon", "webserver"], ["db"]]
    order = record.read_text().split()
    assert sorted(order[:2]) == ["added-later", "worker"]
    assert sorted(order[2:4]) == ["daemon", "webserver"]
    assert order[4:] == ["db"]
    assert supervisor.pid() is None


def test_stop_stops_only_the_named_program_and_start_brings_it_back(supervisor, tmp_path):
    record = tmp_path / "stopped.txt"
    supervisor.write_config([sleeper("worker", record), sleeper("broker", record)])
    supervisor.start_daemon({})
    supervisor.start("worker")
    supervisor.start("broker")

    assert supervisor.stop(["worker"]) == ["worker"]
    assert supervisor.stop(["worker"]) == []  # not running: nothing to stop
    assert record.read_text().split() == ["worker"]
    assert {s.name: s.state for s in supervisor.states()} == {
        "worker": "STOPPED",
        "broker": "RUNNING",
    }
    supervisor.start("worker")
    assert supervisor.is_alive("worker")


def test_each_run_starts_fresh_logs_and_keeps_the_previous_ones(supervisor, tmp_path):
    supervisor.write_config([sleeper("worker", tmp_path / "stopped.txt")])
    supervisor.start_daemon({})
    supervisor.start("worker")
    supervisor.shutdown()
    first = supervisor.log_file("worker").read_text()
    assert "worker started" in first

    supervisor.start_daemon({})

    previous = supervisor.log_dir / PREVIOUS_LOGS
    assert (previous / "worker.log").read_text() == first
    assert (previous / "supervisord.log").exists()
    assert not supervisor.log_file("worker").exists()  # written when the program starts
    assert "worker" not in supervisor.log_file("supervisord").read_text()

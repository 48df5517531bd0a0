import configparser

from binlake.local_stack.supervisor import Program, Supervisor


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

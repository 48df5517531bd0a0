"""`binlake up`, `down` and the component half of `status` for the local stack."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from binlake.jvm_artifacts import ensure_jvm_artifacts
from binlake.local_stack import components as c
from binlake.local_stack.lake_broker_match import refuse_a_lake_the_broker_does_not_hold
from binlake.local_stack.mariadb import MariaDBInstance
from binlake.local_stack.network import port_is_open, wait_until
from binlake.local_stack.runtime import (
    load_runtime_settings,
    resolve_free_ports,
    save_runtime_settings,
)
from binlake.local_stack.supervisor import ProgramState, Supervisor
from binlake.settings import Settings
from binlake.silver.resync import resync_added_tables
from cdc.connect_client import ConnectClient
from cdc.connector_config import build_connector_config, request_limit_bytes
from cdc.topic_limits import raise_topic_limits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartedComponent:
    name: str
    seconds: float


_RELOAD_WORKSPACE = """
mutation { reloadWorkspace { __typename ... on PythonError { message } } }
"""


class LocalStack:
    """The local stack living under one state directory."""

    def __init__(self, settings: Settings):
        self.supervisor = Supervisor(settings.state_dir)
        # A running stack's ports were resolved when it started; a stopped one takes settings
        # afresh, so a changed setting applies at the next `up`.
        self.settings = (
            load_runtime_settings(settings) if self.supervisor.is_running() else settings
        )

    def up(
        self,
        *,
        with_dagster: bool = True,
        progress: Callable[[str], None] = lambda message: None,
    ) -> list[StartedComponent]:
        """Start every component not yet running, in dependency order; idempotent."""
        if not self.supervisor.is_running():
            self.settings = resolve_free_ports(self.settings)
        settings = self.settings
        save_runtime_settings(settings)
        progress("resolving Kafka, Kafka Connect and Debezium (Maven, cached)")
        artifacts = ensure_jvm_artifacts(settings.local.jvm_cache_dir, maven=settings.local.maven)
        mariadb = MariaDBInstance(settings)
        mariadb.write_config()
        if mariadb.initialise_datadir():
            progress("initialised the MariaDB datadir")
        broker = c.kafka_broker(settings, artifacts)
        broker.prepare()
        c.write_connect_worker_properties(settings, artifacts)
        c.write_dagster_instance_config(settings)
        s3 = c.s3_server(settings) if settings.local.object_store else None
        if s3 is not None:
            s3.prepare()
        self.supervisor.write_config(c.programs(settings, mariadb, broker, artifacts, s3))
        self.supervisor.start_daemon(settings.env())

        started: list[StartedComponent] = []
        timeout = settings.local.startup_timeout_seconds

        def start(name: str, ready: Callable[[], bool]) -> None:
            progress(f"starting {name}")
            began = time.monotonic()
            self.supervisor.start(name)
            wait_until(
                ready,
                what=f"{name} (log: {self.supervisor.log_file(name)})",
                timeout_s=timeout,
                still_alive=lambda: self.supervisor.is_alive(name),
            )
            started.append(StartedComponent(name, time.monotonic() - began))

        if s3 is not None:
            start(c.S3, s3.is_ready)
        start(c.MARIADB, lambda: port_is_open(settings.mysql.host, settings.mysql.port))
        mariadb.bootstrap()
        host, port = settings.kafka.bootstrap_servers.split(",")[0].rsplit(":", 1)
        start(c.BROKER, lambda: port_is_open(host, int(port)))
        refuse_a_lake_the_broker_does_not_hold(settings)
        connect = ConnectClient(settings.connect.url)
        start(c.CONNECT, connect.is_ready)
        progress("registering the Debezium connector")
        previous = connect.get_config(settings.connect.connector_name)
        config = build_connector_config(settings)
        for topic, before in raise_topic_limits(
            settings.kafka.bootstrap_servers,
            settings.kafka.topic_prefix,
            request_limit_bytes(settings),
        ).items():
            progress(f"{topic}: max.message.bytes raised from {before:,}")
        connect.put_connector(settings.connect.connector_name, config)
        changed = previous is not None and previous != config
        if changed:
            # The worker started the stored config (an old port, say) before this one arrived;
            # a task that failed on it stays FAILED until restarted.
            connect.restart(settings.connect.connector_name, include_tasks=True)
        connect.wait_until_running(
            settings.connect.connector_name, timeout_s=timeout, failed_grace_s=20 if changed else 0
        )
        # Tables new to the connector stream from now on; a resync brings their existing rows.
        for request in resync_added_tables(settings, previous, config):
            progress(f"resync {request.id} of newly captured {request.table} requested")
        start(c.BRONZE_WORKER, lambda: True)
        if with_dagster:
            start(c.DAGSTER_WEBSERVER, self._dagster_webserver_ready)
            start(c.DAGSTER_DAEMON, lambda: True)
        if c.sql_endpoint_installed():
            start(c.SQL_ENDPOINT, lambda: port_is_open(settings.sql.host, settings.sql.port))
        return started

    def _dagster_webserver_ready(self) -> bool:
        try:
            response = httpx.get(f"{self.dagster_url}/server_info", timeout=1)
            return response.status_code == 200
        except httpx.HTTPError:
            return False

    def reload_dagster_definitions(self) -> None:
        """Ask the webserver to load the definitions again, as its "Reload" button does: what
        they derive from the lake (where the hourly partitions start) is read at load. The daemon
        reloads by itself every minute."""
        response = httpx.post(
            f"{self.dagster_url}/graphql",
            json={"query": _RELOAD_WORKSPACE},
            timeout=60,
        )
        response.raise_for_status()
        result = response.json()
        outcome = (result.get("data") or {}).get("reloadWorkspace") or {}
        if result.get("errors") or outcome.get("__typename") != "Workspace":
            raise RuntimeError(f"Dagster could not reload its definitions: {result}")

    @property
    def dagster_url(self) -> str:
        return f"http://{self.settings.dagster.host}:{self.settings.dagster.port}"

    def is_running(self) -> bool:
        return self.supervisor.is_running()

    def components(self) -> list[ProgramState]:
        return self.supervisor.states()

    def down(
        self, on_stopped: Callable[[list[str], float], None] = lambda names, seconds: None
    ) -> bool:
        """Stop everything this state directory's supervisord started, in the stages of
        `components.STOP_STAGES` (`on_stopped(names, seconds)` after each); False if none was
        up."""
        return self.supervisor.shutdown(
            [list(stage) for stage in c.STOP_STAGES], on_stopped=on_stopped
        )

    def stop(self, name: str) -> bool:
        """Stop one component (and wait until it exited); False if it was not running."""
        return bool(self.supervisor.stop([name]))

    def start(self, name: str) -> None:
        """Start one stopped component again, as `up` configured it."""
        self.supervisor.start(name)

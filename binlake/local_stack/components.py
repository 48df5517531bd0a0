"""How each component of the local stack is configured and launched."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

from binlake.jvm_artifacts import JvmArtifacts
from binlake.local_stack.executables import find_executable
from binlake.local_stack.kafka_broker import LOG4J2_CONFIG, KafkaBroker
from binlake.local_stack.mariadb import MariaDBInstance
from binlake.local_stack.s3_server import DEFAULT_REGION, S3Server, find_weed, kept_server_ports
from binlake.local_stack.supervisor import Program
from binlake.settings import Settings
from cdc.connector_config import request_limit_bytes

S3 = "s3"
MARIADB = "mariadb"
BROKER = "broker"
CONNECT = "connect"
BRONZE_WORKER = "bronze-worker"
DAGSTER_WEBSERVER = "dagster-webserver"
DAGSTER_DAEMON = "dagster-daemon"
SQL_ENDPOINT = "sql-endpoint"
START_ORDER = (
    S3,
    MARIADB,
    BROKER,
    CONNECT,
    BRONZE_WORKER,
    DAGSTER_WEBSERVER,
    DAGSTER_DAEMON,
    SQL_ENDPOINT,
)
# `binlake down`: each stage once the one before has exited, a stage's programs at once. The
# bronze worker first (it commits its offsets while the broker is there), then the lake's readers
# (Dagster, whose runs also read the broker, and the SQL endpoint), Kafka Connect (it flushes to
# the broker), the broker, the source database, and the lake's S3 server once nothing writes to
# it. A program in no stage (one added later) stops with the first.
STOP_STAGES = (
    (BRONZE_WORKER,),
    (DAGSTER_DAEMON, DAGSTER_WEBSERVER, SQL_ENDPOINT),
    (CONNECT,),
    (BROKER,),
    (MARIADB,),
    (S3,),
)
DAGSTER_MODULE = "dagster_defs.definitions"


def kafka_broker(settings: Settings, artifacts: JvmArtifacts) -> KafkaBroker:
    """The local broker; its data stays under the state directory across `down` and `up`."""
    host = settings.kafka.bootstrap_servers.split(",")[0].rsplit(":", 1)[0]
    return KafkaBroker(
        home=settings.state_dir.resolve() / "kafka",
        host=host,
        port=settings.kafka.port,
        classpath=artifacts.classpath,
        java=find_executable(settings.local.java),
        heap=settings.local.broker_heap,
        message_max_bytes=request_limit_bytes(settings),
    )


def s3_server(settings: Settings) -> S3Server:
    """The local S3 server the lake lives on with `local.object_store`; its data stays under
    the state directory across `down` and `up`. Only its S3 port is a setting: the others
    (master, volume, filer, admin) are chosen free once and kept with its data."""
    bucket = urlparse(settings.lake_url).netloc
    data_dir = settings.state_dir.resolve() / "s3"
    return S3Server(
        data_dir=data_dir,
        ports=kept_server_ports(data_dir, settings.local.s3_port),
        access_key=settings.storage.access_key_id.get_secret_value(),
        secret_key=settings.storage.secret_access_key.get_secret_value(),
        bucket=bucket,
        region=settings.storage.region or DEFAULT_REGION,
        executable=find_weed(settings.local.weed),
    )


def dagster_home(settings: Settings) -> Path:
    return settings.state_dir.resolve() / "dagster"


def write_connect_worker_properties(settings: Settings, artifacts: JvmArtifacts) -> Path:
    """Kafka Connect distributed worker; the connector itself is registered over REST."""
    home = settings.state_dir.resolve() / "connect"
    home.mkdir(parents=True, exist_ok=True)
    prefix = settings.kafka.topic_prefix
    properties = {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "group.id": settings.connect.group_id,
        "config.storage.topic": f"{prefix}.connect-configs",
        "offset.storage.topic": f"{prefix}.connect-offsets",
        "status.storage.topic": f"{prefix}.connect-status",
        "config.storage.replication.factor": "1",
        "offset.storage.replication.factor": "1",
        "offset.storage.partitions": "1",
        "status.storage.replication.factor": "1",
        "status.storage.partitions": "1",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "listeners": f"http://127.0.0.1:{settings.connect.port}",
        "rest.advertised.host.name": "127.0.0.1",
        "rest.advertised.port": str(settings.connect.port),
        "offset.flush.interval.ms": "1000",
        # Each Debezium connector in a folder of its own, isolated from the worker's classpath.
        "plugin.path": str(artifacts.plugin_path),
        "plugin.discovery": "service_load",
        # KIP-618: the connector's records and its source offsets commit in one transaction, so
        # a crashed worker re-sends nothing a read_committed consumer has seen.
        "exactly.once.source.support": "enabled" if settings.connect.exactly_once else "disabled",
        # A killed worker's open transaction blocks its successor's read of the offsets topic
        # (read_committed) until the broker aborts it: 60 s by default, so capture resumed
        # ~70 s after a Connect crash; 19 s with 10 s (benchmarks/exactly_once.py). A
        # transaction open longer (a broker away that long) is aborted and the task fails, to be
        # restarted by the connector health sensor; nothing is lost.
        "producer.transaction.timeout.ms": "10000",
        "topic.creation.enable": "true",
        # The connector sets its producer's limits from kafka.max_record_bytes
        # (cdc.connector_config.large_record_config); the worker default says the same.
        "connector.client.config.override.policy": "All",
        "producer.max.request.size": str(request_limit_bytes(settings)),
    }
    path = home / "worker.properties"
    path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
    return path


def write_dagster_instance_config(settings: Settings) -> Path:
    """DAGSTER_HOME/dagster.yaml: no telemetry and no pop-up, SQLite storage locally
    (PostgreSQL in production), a queued run coordinator with one maintenance, compaction and
    replay run at a time and one resync run per table, one writer per silver table (concurrency
    pools), threaded sensor evaluation."""
    home = dagster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    config = {
        # A local stack phones nothing home and shows no community pop-up (the "nux" dialog).
        "telemetry": {"enabled": False},
        "nux": {"enabled": False},
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"dequeue_interval_seconds": 1},
        },
        "concurrency": {
            "runs": {
                "max_concurrent_runs": 4,
                "tag_concurrency_limits": [
                    {"key": "binlake/maintenance", "limit": 1},
                    {"key": "binlake/compaction", "limit": 1},
                    {"key": "binlake/replay", "limit": 1},
                    # one resync run per table (the tag's value is the table)
                    {
                        "key": "binlake/resync",
                        "value": {"applyLimitPerUniqueValue": True},
                        "limit": 1,
                    },
                ],
            },
            # one step at a time per pool: each silver asset's pool is its key
            "pools": {"default_limit": 1},
        },
        "sensors": {"use_threads": True, "num_workers": 4},
        "auto_materialize": {"enabled": True, "use_sensors": True, "use_threads": True},
    }
    path = home / "dagster.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def programs(
    settings: Settings,
    mariadb: MariaDBInstance,
    broker: KafkaBroker,
    artifacts: JvmArtifacts,
    s3: S3Server | None = None,
) -> list[Program]:
    """Every component (the S3 server when there is one), each given a priority from
    START_ORDER so `down` stops them in reverse (Kafka Connect flushes to the broker before the
    broker goes, writers stop before the lake's server)."""
    listed = _programs(settings, mariadb, broker, artifacts)
    if s3 is not None:
        listed.insert(0, Program(S3, s3.command(), environment=s3.environment({})))
    if sql_endpoint_installed():
        listed.append(Program(SQL_ENDPOINT, [sys.executable, "-m", "binlake", "sql-endpoint"]))
    return [
        dataclasses.replace(program, priority=100 + 10 * START_ORDER.index(program.name))
        for program in listed
    ]


def sql_endpoint_installed() -> bool:
    """chDB (the `sql` extra, in `dev` too) is there to serve the lake's SQL views."""
    return importlib.util.find_spec("chdb") is not None


def _programs(
    settings: Settings, mariadb: MariaDBInstance, broker: KafkaBroker, artifacts: JvmArtifacts
) -> list[Program]:
    bin_dir = Path(sys.executable).parent
    env_dagster = {"DAGSTER_HOME": str(dagster_home(settings))}
    worker_properties = settings.state_dir.resolve() / "connect" / "worker.properties"
    return [
        Program(MARIADB, mariadb.server_command()),
        # A controlled shutdown flushes the logs and writes a clean-shutdown marker, so the
        # next start skips log recovery.
        Program(BROKER, broker.command(), stop_wait_seconds=60),
        Program(
            CONNECT,
            [
                find_executable(settings.local.java),
                f"-Xmx{settings.local.java_heap}",
                f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
                "-cp",
                f"{artifacts.classpath}/*",
                "org.apache.kafka.connect.cli.ConnectDistributed",
                str(worker_properties),
            ],
            stop_wait_seconds=30,
        ),
        Program(BRONZE_WORKER, [sys.executable, "-m", "binlake", "worker"]),
        Program(
            DAGSTER_WEBSERVER,
            [
                str(bin_dir / "dagster-webserver"),
                "-h",
                settings.dagster.host,
                "-p",
                str(settings.dagster.port),
                "-m",
                DAGSTER_MODULE,
            ],
            environment=env_dagster,
        ),
        Program(
            DAGSTER_DAEMON,
            [str(bin_dir / "dagster-daemon"), "run", "-m", DAGSTER_MODULE],
            environment=env_dagster,
        ),
    ]

"""docker-compose.yml cannot run here (no Docker engine), so its agreement with the code is
checked by reading it: services, commands, ports and BINLAKE_* variable names, and its agreement
with the local stack: the Kafka, Kafka Connect and Debezium versions of deploy/jvm/pom.xml, and
the Connect worker's settings (deploy/connect/worker.properties against the local worker's)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlparse

import pytest
import typer.main
import yaml

from binlake.cli import app as cli_app
from binlake.jvm_artifacts import CHECKSUMS, POM, JvmArtifacts, read_checksums
from binlake.local_stack.components import DAGSTER_MODULE
from binlake.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    return {k: str(v) for k, v in env.items()}


def _binlake_settings(service: dict, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in _env(service).items():
        if key.startswith("BINLAKE_"):
            monkeypatch.setenv(key, re.sub(r"\$\{[^}]+\}", "secret", value))
    return load_settings()


def _pom_property(name: str) -> str:
    properties = ET.parse(POM).getroot().find("{http://maven.apache.org/POM/4.0.0}properties")
    assert properties is not None, f"{POM} has no <properties>"
    value = properties.findtext(f"{{http://maven.apache.org/POM/4.0.0}}{name}")
    assert value, f"{POM} sets no {name}"
    return value


def _properties(text: str) -> dict[str, str]:
    """A Java properties file of plain `key=value` lines and `#` comments."""
    pairs = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith(("#", "!")):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def _local_worker(tmp_path: Path, **overrides: object) -> dict[str, str]:
    """The local stack's Connect worker properties (binlake up), for default settings."""
    from binlake.local_stack.components import write_connect_worker_properties

    local = load_settings(state_dir=tmp_path / "state", **overrides)
    path = write_connect_worker_properties(local, JvmArtifacts(tmp_path / "jvm"))
    return _properties(path.read_text())


def _compose_worker(compose: dict) -> dict[str, str]:
    """deploy/connect/worker.properties, found through the connect service: the file mounted
    where its command reads the worker configuration."""
    connect = compose["services"]["connect"]
    config_path = connect["command"][-1]
    mounts = dict(reversed(volume.split(":")[:2]) for volume in connect["volumes"])
    assert config_path in mounts, f"connect reads {config_path}, which no volume provides"
    return _properties((ROOT / mounts[config_path]).read_text())


def _connect_dockerfile(compose: dict) -> str:
    context = compose["services"]["connect"]["build"]
    return (ROOT / context / "Dockerfile").read_text()


def test_production_topology_has_every_component(compose: dict) -> None:
    assert set(compose["services"]) == {
        "mysql",
        "kafka",
        "schema-registry",
        "connect",
        "connector-register",
        "bronze-worker",
        "postgres",
        "dagster-webserver",
        "dagster-daemon",
    }
    assert compose["services"]["mysql"]["image"].startswith("mysql:8")
    mysql_flags = compose["services"]["mysql"]["command"]
    assert "--binlog-format=ROW" in mysql_flags and "--binlog-row-image=FULL" in mysql_flags
    kafka_env = _env(compose["services"]["kafka"])
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert "connect-distributed.sh" in compose["services"]["connect"]["command"][0]


def test_every_binlake_variable_is_a_setting(compose: dict) -> None:
    known = set(Settings().env())
    for name, service in compose["services"].items():
        unknown = {k for k in _env(service) if k.startswith("BINLAKE_")} - known
        assert not unknown, f"{name} sets variables binlake does not read: {unknown}"


def test_binlake_commands_exist_in_the_cli(compose: dict) -> None:
    root = typer.main.get_command(cli_app)
    for name in ("connector-register", "bronze-worker"):
        command = compose["services"][name]["command"]
        assert command[0] == "binlake", name
        node = root
        for word in command[1:]:
            assert word in getattr(node, "commands", {}), f"{name}: {command}"
            node = node.commands[word]


def test_dagster_processes_load_the_code_location(compose: dict) -> None:
    for name in ("dagster-webserver", "dagster-daemon"):
        command = compose["services"][name]["command"]
        assert command[command.index("-m") + 1] == DAGSTER_MODULE
        env = _env(compose["services"][name])
        assert env["DAGSTER_HOME"] == "/opt/dagster/home"
        assert {
            "DAGSTER_PG_HOST",
            "DAGSTER_PG_USER",
            "DAGSTER_PG_PASSWORD",
            "DAGSTER_PG_DB",
        } <= set(env)
    instance = yaml.safe_load((ROOT / "deploy/dagster/dagster.yaml").read_text())
    assert "postgres" in instance["storage"]
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"


@pytest.mark.parametrize(
    "job_module",
    ["dagster_defs.maintenance.jobs", "dagster_defs.compaction.jobs", "dagster_defs.replay.jobs"],
)
def test_one_housekeeping_run_at_a_time(job_module: str) -> None:
    """Maintenance, compaction and replay each run one at a time (their tag's limit in
    dagster.yaml)."""
    import importlib

    import dagster as dg
    from dagster._utils.tags import TagConcurrencyLimitsCounter

    module = importlib.import_module(job_module)
    tag = next(v for k, v in vars(module).items() if k.endswith("_TAG"))
    job_name = next(v for k, v in vars(module).items() if k.endswith("_JOB_NAME"))

    instance = yaml.safe_load((ROOT / "deploy/dagster/dagster.yaml").read_text())
    limits = instance["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {"key": tag, "limit": 1} in limits

    def run() -> dg.DagsterRun:
        return dg.DagsterRun(job_name=job_name, tags={tag: "true"})

    assert not TagConcurrencyLimitsCounter(limits, []).is_blocked(run())
    assert TagConcurrencyLimitsCounter(limits, [run()]).is_blocked(run())


def test_addresses_agree_between_services(compose: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose["services"]
    settings = _binlake_settings(services["bronze-worker"], monkeypatch)
    kafka_advertised = _env(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    assert f"//{settings.kafka.bootstrap_servers}" in kafka_advertised
    worker = _compose_worker(compose)
    assert worker["bootstrap.servers"] == settings.kafka.bootstrap_servers
    assert settings.mysql.host in services and settings.mysql.port == 3306
    connect = urlparse(settings.connect.url)
    assert connect.hostname in services
    assert f"{connect.port}:{connect.port}" in services["connect"]["ports"]
    assert urlparse(worker["listeners"]).port == connect.port
    assert worker["rest.advertised.host.name"] == connect.hostname
    assert int(worker["rest.advertised.port"]) == connect.port
    web = services["dagster-webserver"]
    assert web["command"][web["command"].index("-p") + 1] == "3000"
    assert "3000:3000" in web["ports"]
    for name in ("bronze-worker", "dagster-webserver", "dagster-daemon"):
        assert "lake:/lake" in services[name]["volumes"], name
        assert _env(services[name])["BINLAKE_STORAGE_URL"] == "/lake"


# Where the two workers may differ: addresses (compose's network, the local ports) and the
# folder the plugins are unpacked in. The request limit follows each side's own settings.
SITE_SPECIFIC_WORKER_KEYS = {
    "bootstrap.servers",
    "listeners",
    "rest.advertised.host.name",
    "rest.advertised.port",
    "plugin.path",
    "producer.max.request.size",
}


def test_connect_worker_matches_the_local_worker(compose: dict, tmp_path: Path) -> None:
    """Production's Connect worker sets the same keys as `binlake up`'s, with the same values
    (storage topics, group, converters, plugin discovery, exactly-once, topic creation) but for
    its addresses and plugin folder."""
    local = _local_worker(tmp_path)
    production = _compose_worker(compose)
    assert production.keys() == local.keys()
    differing = {
        key: (production[key], local[key])
        for key in production.keys() - SITE_SPECIFIC_WORKER_KEYS
        if production[key] != local[key]
    }
    assert not differing, (
        f"deploy/connect/worker.properties differs from the local worker: {differing}"
    )


def test_connect_image_unpacks_the_plugins_where_the_worker_looks(compose: dict) -> None:
    dockerfile = _connect_dockerfile(compose)
    copies = re.findall(r"^COPY --from=plugins\b.*\s(\S+)$", dockerfile, re.MULTILINE)
    assert copies == [_compose_worker(compose)["plugin.path"]]


def test_kafka_and_debezium_are_the_local_stacks_versions(compose: dict) -> None:
    """The broker, Kafka Connect, the Debezium plugin and the registry are the versions
    deploy/jvm/pom.xml pins for `binlake up`; the plugin is the very archive it pins."""
    kafka_version = _pom_property("kafka.version")
    debezium_version = _pom_property("debezium.version")
    services = compose["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version}"
    dockerfile = _connect_dockerfile(compose)
    # Connect runs on Kafka's own image: every stage starts from the broker's image.
    assert re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE) == [
        f"apache/kafka:{kafka_version}",
        f"apache/kafka:{kafka_version}",
    ]
    archive = f"debezium-connector-mysql-{debezium_version}-plugin.tar.gz"
    maven_central = "https://repo1.maven.org/maven2/io/debezium/debezium-connector-mysql"
    downloads = re.findall(
        r"^ADD --checksum=sha256:([0-9a-f]{64})\s*\\?\s*(\S+)", dockerfile, re.MULTILINE
    )
    assert downloads == [
        (
            read_checksums(CHECKSUMS)[f"archives/{archive}"],
            f"{maven_central}/{debezium_version}/{archive}",
        )
    ]
    # The tag compose gives the built image names what is in it.
    assert services["connect"]["image"] == (
        f"binlake-connect:kafka-{kafka_version}-debezium-{debezium_version}"
    )
    assert services["schema-registry"]["image"] == (
        f"apicurio/apicurio-registry:{_pom_property('apicurio.version')}"
    )


def test_compose_captures_mysql_with_the_mysql_connector(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cdc.connector_config import CONNECTOR_CLASSES, build_connector_config

    services = compose["services"]
    assert services["mysql"]["image"].startswith("mysql:8")
    settings = _binlake_settings(services["connector-register"], monkeypatch)
    assert settings.mysql.flavor == "mysql"
    config = build_connector_config(settings)
    assert config["connector.class"] == CONNECTOR_CLASSES["mysql"]
    # ... and that connector's plugin is the one the Connect image installs.
    assert f"/debezium-connector-{settings.mysql.flavor}-" in _connect_dockerfile(compose)


def test_exactly_once_source_as_in_the_local_stack(
    compose: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Connect commits records and source offsets in one transaction, the connector requires it,
    and the single broker can hold the transaction log."""
    from cdc.connector_config import build_connector_config

    services = compose["services"]
    worker = _compose_worker(compose)
    assert (
        worker["exactly.once.source.support"]
        == _local_worker(tmp_path)["exactly.once.source.support"]
    )
    settings = _binlake_settings(services["connector-register"], monkeypatch)
    assert settings.connect.exactly_once
    assert worker["exactly.once.source.support"] == "enabled"
    assert build_connector_config(settings)["exactly.once.support"] == "required"
    broker = _env(services["kafka"])
    # One node: a transaction log wanting more replicas (default 3) would fail every commit.
    assert broker["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@") == 1
    assert int(broker["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == 1
    assert int(broker["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == 1


def test_the_broker_keeps_its_data_on_its_volume(compose: dict) -> None:
    """The lake continues across restarts only if the broker's topics (and Connect's offsets)
    do: its log directory is the mounted volume, not the image's /tmp default."""
    kafka = compose["services"]["kafka"]
    log_dirs = _env(kafka)["KAFKA_LOG_DIRS"]
    assert log_dirs in {volume.split(":")[1] for volume in kafka["volumes"]}
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", _env(kafka)["CLUSTER_ID"])


def test_no_service_refers_to_tansu(compose: dict) -> None:
    for name, service in compose["services"].items():
        assert "tansu" not in yaml.safe_dump(service).lower(), name
    assert "tansu" not in _connect_dockerfile(compose).lower()
    assert "tansu" not in (ROOT / "deploy/connect/worker.properties").read_text().lower()


def test_passwords_come_from_the_environment_with_no_default(compose: dict) -> None:
    for name, service in compose["services"].items():
        for key, value in _env(service).items():
            if "PASSWORD" in key:
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", value), f"{name}: {key}={value}"
    init = (ROOT / "deploy/mysql/init-cdc-user.sh").read_text()
    assert "${MYSQL_CDC_PASSWORD}" in init
    assert "MYSQL_CDC_PASSWORD" in _env(compose["services"]["mysql"])


@pytest.mark.parametrize("where", ["production", "local"])
def test_each_silver_table_has_one_writer_at_a_time(
    where: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both instance configs load in Dagster and limit every pool (each silver asset's) to one
    step at a time."""
    import dagster as dg

    from binlake.local_stack.components import write_dagster_instance_config
    from binlake.settings import load_settings

    if where == "production":
        config_dir = ROOT / "deploy/dagster"
        for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
            monkeypatch.setenv(name, "unused")
        text = (config_dir / "dagster.yaml").read_text()
        # Storage aside (no PostgreSQL here): the same concurrency and run queue sections.
        instance = yaml.safe_load(text)
        instance.pop("storage")
        (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance))
    else:
        settings = load_settings(state_dir=tmp_path / "state", storage_url=str(tmp_path / "lake"))
        (tmp_path / "dagster.yaml").write_text(write_dagster_instance_config(settings).read_text())
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        assert instance.event_log_storage.supports_global_concurrency_limits


def test_every_hop_carries_the_largest_record(
    compose: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One limit, kafka.max_record_bytes, on every hop: a narrower hop would stop capture."""
    from cdc.connector_config import build_connector_config, request_limit_bytes

    services = compose["services"]
    settings = _binlake_settings(services["connector-register"], monkeypatch)
    limit = request_limit_bytes(settings)
    assert settings.kafka.max_record_bytes >= 16 * 1024 * 1024  # the issue asks at least 16 MB
    broker = _env(services["kafka"])
    assert int(broker["KAFKA_MESSAGE_MAX_BYTES"]) == limit
    assert int(broker["KAFKA_REPLICA_FETCH_MAX_BYTES"]) >= limit
    connect = _compose_worker(compose)
    assert connect["connector.client.config.override.policy"] == "All"
    assert int(connect["producer.max.request.size"]) == limit
    config = build_connector_config(settings)
    assert int(config["producer.override.max.request.size"]) == limit
    assert int(config["topic.creation.default.max.message.bytes"]) == limit
    assert int(config["producer.override.buffer.memory"]) >= limit
    for name in ("bronze-worker", "dagster-daemon"):
        worker = _binlake_settings(services[name], monkeypatch)
        assert worker.kafka.max_record_bytes == settings.kafka.max_record_bytes
        assert worker.bronze_max_message_bytes == settings.kafka.max_record_bytes
    local = load_settings(state_dir=tmp_path / "state")
    properties = _local_worker(tmp_path)
    assert properties["connector.client.config.override.policy"] == "All"
    assert int(properties["producer.max.request.size"]) == request_limit_bytes(local)

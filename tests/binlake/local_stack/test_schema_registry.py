"""How Apicurio Registry is launched, and which Java runs it (tests/integration/test_avro_worker.py
runs the real registry)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from binlake.errors import ConfigurationError
from binlake.local_stack.schema_registry import (
    SchemaRegistry,
    find_registry_java,
    java_major_version,
)


def registry(tmp_path: Path, **overrides) -> SchemaRegistry:
    settings = {
        "home": tmp_path / "registry",
        "host": "127.0.0.1",
        "port": 18081,
        "management_port": 19000,
        "jar": tmp_path / "quarkus-run.jar",
        "java": "/opt/java21/bin/java",
    }
    return SchemaRegistry(**(settings | overrides))


def properties(command: list[str]) -> dict[str, str]:
    return dict(arg[2:].split("=", 1) for arg in command if arg.startswith("-D"))


def test_in_memory_registry_listens_on_its_host_and_both_ports(tmp_path):
    server = registry(tmp_path)
    command = server.prepare()
    assert command[0] == "/opt/java21/bin/java"
    assert command[-2:] == ["-jar", str(tmp_path / "quarkus-run.jar")]
    props = properties(command)
    assert props["quarkus.http.host"] == props["quarkus.management.host"] == "127.0.0.1"
    assert (props["quarkus.http.port"], props["quarkus.management.port"]) == ("18081", "19000")
    assert "apicurio.datasource.url" not in props  # Apicurio's default: H2 in memory
    assert props["java.io.tmpdir"] == str(server.temp_dir) and server.temp_dir.is_dir()
    assert server.url == "http://127.0.0.1:18081/apis/ccompat/v7"
    assert server.readiness_url == "http://127.0.0.1:19000/health/ready"
    assert not any(arg.startswith("-XX:SharedArchiveFile") for arg in command)


def test_persistent_registry_keeps_its_database_under_home(tmp_path):
    archive = tmp_path / "registry.jsa"
    server = registry(tmp_path, persistent=True, class_data_archive=archive)
    command = server.prepare()
    assert properties(command)["apicurio.datasource.url"] == (
        f"jdbc:h2:file:{server.home / 'db' / 'registry'}"
    )
    assert server.database_dir.is_dir()
    assert f"-XX:SharedArchiveFile={archive}" in command


def test_a_registry_not_listening_is_not_ready(tmp_path):
    from binlake.local_stack.network import free_port

    assert not registry(tmp_path, management_port=free_port()).is_ready()


def fake_java(path: Path, version: int) -> str:
    """An executable answering `-XshowSettings:properties -version` as Java `version` does."""
    path.write_text(
        f"#!/bin/sh\necho 'Property settings:' >&2\n"
        f"echo '    java.specification.version = {version}' >&2\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_a_configured_java_must_be_21_or_newer(tmp_path):
    java17 = fake_java(tmp_path / "java17", 17)
    java25 = fake_java(tmp_path / "java25", 25)
    assert java_major_version(java17) == 17
    with pytest.raises(ConfigurationError, match=r"java17 is Java 17; .* needs Java 21"):
        find_registry_java(java17)
    assert find_registry_java(java25) == java25
    with pytest.raises(ConfigurationError, match="Java unknown"):
        find_registry_java(str(tmp_path / "missing"))


def test_without_a_setting_the_first_java_21_is_taken(tmp_path, monkeypatch):
    java17 = fake_java(tmp_path / "java17", 17)
    home = tmp_path / "jdk21"
    (home / "bin").mkdir(parents=True)
    java21 = fake_java(home / "bin" / "java", 21)
    monkeypatch.setenv("JAVA_HOME", str(home))
    assert find_registry_java("", fallback=java17) == java21
    monkeypatch.setattr("glob.glob", lambda pattern: [])
    monkeypatch.delenv("JAVA_HOME")
    with pytest.raises(ConfigurationError, match=r"no Java 21\+ .*java17 \(Java 17\)"):
        find_registry_java("", fallback=java17)

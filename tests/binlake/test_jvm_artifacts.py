"""The pinned JVM artifacts: checksums read and compared, archives unpacked where they belong.
(Maven itself runs in `binlake setup`, which every integration test session goes through.)"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from binlake import jvm_artifacts
from binlake.errors import ConfigurationError


def write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_the_pinned_file_names_every_artifact_the_pom_resolves() -> None:
    pinned = jvm_artifacts.read_checksums(jvm_artifacts.CHECKSUMS)
    names = set(pinned)
    assert {n for n in names if n.startswith("archives/")} == {
        "archives/apicurio-registry-app-3.3.3-all.tar.gz",
        "archives/debezium-connector-mariadb-3.5.0.Final-plugin.tar.gz",
        "archives/debezium-connector-mysql-3.6.1.Final-plugin.tar.gz",
    }
    kafka = {n for n in names if n.startswith(("lib/kafka", "lib/connect-"))}
    assert kafka and all("4.3.2" in n for n in kafka)  # one version for every Kafka artifact


def test_checksums_name_what_is_missing_extra_or_different(tmp_path: Path) -> None:
    good = write(tmp_path / "lib" / "a.jar", b"a")
    write(tmp_path / "lib" / "extra.jar", b"x")
    write(tmp_path / "archives" / "b.tar.gz", b"changed")
    expected = {"lib/a.jar": good, "archives/b.tar.gz": "0" * 64, "lib/gone.jar": "1" * 64}
    problems = jvm_artifacts.checksum_problems(tmp_path, expected)
    assert problems == [
        "lib/gone.jar is missing",
        "lib/extra.jar is not pinned",
        f"archives/b.tar.gz has sha256 {hashlib.sha256(b'changed').hexdigest()}, expected "
        + "0" * 64,
    ]


def test_a_malformed_checksum_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "checksums.sha256"
    path.write_text("# pinned\n" + "a" * 64 + "  lib/a.jar\nnot a checksum\n")
    with pytest.raises(ConfigurationError, match=r"checksums.sha256:3: expected"):
        jvm_artifacts.read_checksums(path)


def test_plugins_and_registry_are_unpacked_apart(tmp_path: Path) -> None:
    write(
        tmp_path / "archives" / "debezium-connector-mysql-1-plugin.tar.gz",
        tar_gz({"debezium-connector-mysql/x.jar": b"x"}),
    )
    write(
        tmp_path / "archives" / "apicurio-registry-app-1-all.tar.gz",
        tar_gz({"quarkus-run.jar": b"q"}),
    )
    jvm_artifacts.unpack_archives(tmp_path)
    artifacts = jvm_artifacts.JvmArtifacts(tmp_path)
    assert (artifacts.plugin_path / "debezium-connector-mysql" / "x.jar").read_bytes() == b"x"
    assert artifacts.registry_jar.read_bytes() == b"q"
    assert not (tmp_path / "archives").exists()


def test_an_archive_escaping_its_folder_is_refused(tmp_path: Path) -> None:
    write(
        tmp_path / "archives" / "debezium-connector-evil-plugin.tar.gz",
        tar_gz({"../../outside.jar": b"x"}),
    )
    with pytest.raises(tarfile.OutsideDestinationError):
        jvm_artifacts.unpack_archives(tmp_path)
    assert not (tmp_path.parent / "outside.jar").exists()


def test_an_unknown_archive_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "archives" / "something-else.tar.gz", tar_gz({"a": b"a"}))
    with pytest.raises(ConfigurationError, match=r"something-else.tar.gz: no place to unpack"):
        jvm_artifacts.unpack_archives(tmp_path)


def test_a_built_cache_is_used_without_maven(tmp_path: Path) -> None:
    target = tmp_path / jvm_artifacts.cache_key()
    target.mkdir()
    (target / jvm_artifacts.COMPLETE_MARKER).write_text("done\n")
    found = jvm_artifacts.ensure_jvm_artifacts(tmp_path, maven="no-such-maven")
    assert found.root == target


def test_without_maven_setup_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no-such-maven not found: install Maven"):
        jvm_artifacts.ensure_jvm_artifacts(tmp_path, maven="no-such-maven")
    assert list(tmp_path.iterdir()) == []  # no staging left behind

"""The local stack's JVM components, resolved by Maven from `deploy/jvm/pom.xml`.

Apache Kafka (broker and Kafka Connect share one classpath, as in Kafka's own `libs/`), Debezium's
MySQL and MariaDB connector plugins, and Apicurio Registry. `mvn package` copies the jars and the
archives into a staging directory; every file is checked against `deploy/jvm/checksums.sha256`
before the archives are unpacked and the directory is renamed into place. The cache is keyed by
the pom and the checksums, so changing a version builds a new one beside the old; once built,
nothing is fetched again (and Maven's own repository makes a rebuild work offline).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from binlake.errors import ConfigurationError, RetriableError

JVM_DIR = Path(__file__).resolve().parent.parent / "deploy" / "jvm"
POM = JVM_DIR / "pom.xml"
CHECKSUMS = JVM_DIR / "checksums.sha256"
COMPLETE_MARKER = ".complete"
# Where each archive is unpacked, by the start of its file name.
PLUGIN_ARCHIVES = ("debezium-connector-",)
REGISTRY_ARCHIVE = "apicurio-registry-app-"


@dataclass(frozen=True)
class JvmArtifacts:
    """One resolved cache directory."""

    root: Path

    @property
    def classpath(self) -> Path:
        """Jars of the broker and of the Connect worker (`-cp '<dir>/*'`)."""
        return self.root / "lib"

    @property
    def plugin_path(self) -> Path:
        """Connect's `plugin.path`: one directory per Debezium connector."""
        return self.root / "plugins"

    @property
    def registry_jar(self) -> Path:
        """Apicurio Registry's Quarkus launcher (`java -jar`)."""
        return self.root / "registry" / "quarkus-run.jar"


def cache_key() -> str:
    digest = hashlib.sha256(POM.read_bytes() + CHECKSUMS.read_bytes())
    return digest.hexdigest()[:16]


def ensure_jvm_artifacts(cache_dir: Path, *, maven: str = "mvn") -> JvmArtifacts:
    """The cache directory for the pinned versions, resolving and checking it once."""
    target = cache_dir.expanduser() / cache_key()
    if (target / COMPLETE_MARKER).exists():
        return JvmArtifacts(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        resolve_with_maven(staging, maven=maven)
        problems = checksum_problems(staging, read_checksums(CHECKSUMS))
        if problems:
            raise ConfigurationError(
                f"JVM artifacts resolved from {POM} do not match {CHECKSUMS}: "
                + "; ".join(problems)
                + " (after changing a version in the pom, run `binlake setup --record-checksums`)"
            )
        unpack_archives(staging)
        (staging / COMPLETE_MARKER).write_text(cache_key() + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return JvmArtifacts(target)


def record_checksums(*, maven: str = "mvn") -> Path:
    """Resolve the pom afresh and write what it resolved to `checksums.sha256` (for a version
    bump: review the diff, since these are the bytes every machine will trust)."""
    with tempfile.TemporaryDirectory(prefix="binlake-jvm-") as staging:
        resolve_with_maven(Path(staging), maven=maven)
        lines = [
            f"{digest}  {name}\n" for name, digest in sorted(file_digests(Path(staging)).items())
        ]
    CHECKSUMS.write_text("".join(lines))
    return CHECKSUMS


def resolve_with_maven(output: Path, *, maven: str = "mvn") -> None:
    """`mvn package` of the pom into `output`: lib/ (jars) and archives/ (tar.gz)."""
    executable = shutil.which(maven)
    if executable is None:
        raise ConfigurationError(
            f"{maven} not found: install Maven (apt-get install maven, or .ci/install-system-deps)"
        )
    command = [
        executable,
        "-B",
        "-q",
        "--strict-checksums",
        "-f",
        str(POM),
        "package",
        f"-Dbinlake.jvm.dir={output}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RetriableError(
            f"Maven could not resolve {POM} (exit {result.returncode}): "
            f"{(result.stdout + result.stderr)[-3000:]}"
        )
    shutil.rmtree(output / ".maven", ignore_errors=True)


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of every file Maven put under lib/ and archives/, by path relative to `root`."""
    digests = {}
    for folder in ("lib", "archives"):
        for path in sorted((root / folder).glob("*")):
            digests[f"{folder}/{path.name}"] = _sha256(path)
    return digests


def read_checksums(path: Path) -> dict[str, str]:
    """`sha256sum` format: `<hex>  <relative path>` per line; '#' starts a comment."""
    expected = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise ConfigurationError(f"{path}:{number}: expected '<sha256>  <path>', got {line!r}")
        expected[name.strip()] = digest
    return expected


def checksum_problems(root: Path, expected: dict[str, str]) -> list[str]:
    actual = file_digests(root)
    problems = [f"{name} is missing" for name in sorted(expected.keys() - actual.keys())]
    problems += [f"{name} is not pinned" for name in sorted(actual.keys() - expected.keys())]
    problems += [
        f"{name} has sha256 {actual[name]}, expected {expected[name]}"
        for name in sorted(expected.keys() & actual.keys())
        if actual[name] != expected[name]
    ]
    return problems


def unpack_archives(root: Path) -> None:
    """Debezium plugins into plugins/ (each archive holds one top folder), the registry into
    registry/; the archives are removed once unpacked."""
    for archive in sorted((root / "archives").glob("*.tar.gz")):
        if archive.name.startswith(PLUGIN_ARCHIVES):
            destination = root / "plugins"
        elif archive.name.startswith(REGISTRY_ARCHIVE):
            destination = root / "registry"
        else:
            raise ConfigurationError(f"{archive.name}: no place to unpack it (see {POM})")
        destination.mkdir(exist_ok=True)
        with tarfile.open(archive) as tar:
            # "data": no absolute paths, no links out of the destination, no device files.
            tar.extractall(destination, filter="data")
    shutil.rmtree(root / "archives")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

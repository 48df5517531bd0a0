"""Apicurio Registry 3 (a Quarkus application) as the Confluent-compatible schema registry.

Producers (Debezium's Avro converter) register writer schemas and the bronze worker fetches
them by id through Apicurio's Confluent-compatible API (`<url>/schemas/ids/<id>`, under
`/apis/ccompat/v7`). Apicurio 3.3 is built for Java 21, one more than the broker needs, so the
registry's Java is looked up separately (`find_registry_java`).

Storage is Apicurio's default SQL storage on H2: in memory (lost on exit) unless `persistent`,
when the H2 database is a file under `home`. A persistent registry goes with a persistent
broker: the schema ids inside the broker's records only mean something to the registry that
gave them out.

Apicurio serves its health checks on a second, "management" port (9000 on all interfaces by
default); it is given a free port on `host` too, so several registries can run side by side.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

from binlake.errors import ConfigurationError

REGISTRY_MIN_JAVA = 21
CCOMPAT_PATH = "/apis/ccompat/v7"


@dataclass(frozen=True)
class SchemaRegistry:
    """How one Apicurio Registry is laid out and launched."""

    home: Path
    host: str
    port: int
    management_port: int
    jar: Path
    java: str = "java"
    heap: str = "256m"
    persistent: bool = False
    # A JVM class-data archive (AppCDS) written at the first exit and read by later starts.
    class_data_archive: Path | None = None

    @property
    def url(self) -> str:
        """The Confluent-compatible API (`kafka.schema_registry_url`, converters' `url`)."""
        return f"http://{self.host}:{self.port}{CCOMPAT_PATH}"

    @property
    def readiness_url(self) -> str:
        return f"http://{self.host}:{self.management_port}/health/ready"

    @property
    def database_dir(self) -> Path:
        return self.home / "db"

    @property
    def temp_dir(self) -> Path:
        return self.home / "tmp"

    def prepare(self) -> list[str]:
        """Create the home; returns the command to run."""
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        if self.persistent:
            self.database_dir.mkdir(parents=True, exist_ok=True)
        return self.command()

    def command(self) -> list[str]:
        properties = {
            "quarkus.http.host": self.host,
            "quarkus.http.port": str(self.port),
            "quarkus.management.host": self.host,
            "quarkus.management.port": str(self.management_port),
            # One request per line is Apicurio's default; the local stack's logs keep errors.
            "quarkus.http.access-log.enabled": "false",
            # Apicurio opens 20 database connections at start; one process of binlake needs few.
            "apicurio.datasource.jdbc.initial-size": "1",
            "apicurio.datasource.jdbc.min-size": "1",
            "apicurio.datasource.jdbc.max-size": "10",
            "apicurio.storage.snapshot.location": str(self.temp_dir),
            "apicurio.import.work-dir": str(self.temp_dir),
            "java.io.tmpdir": str(self.temp_dir),
        }
        if self.persistent:
            properties["apicurio.datasource.url"] = f"jdbc:h2:file:{self.database_dir / 'registry'}"
        # C1 only and the serial collector: the registry starts in ~6-8 s instead of ~24 s on
        # two busy cores, and its load (a few schema lookups) never needs C2.
        jvm_options = [f"-Xmx{self.heap}", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
        if self.class_data_archive is not None:
            jvm_options += [
                "-XX:+AutoCreateSharedArchive",
                f"-XX:SharedArchiveFile={self.class_data_archive}",
            ]
        return [
            self.java,
            *jvm_options,
            *(f"-D{key}={value}" for key, value in properties.items()),
            "-jar",
            str(self.jar),
        ]

    def is_ready(self) -> bool:
        """True once Apicurio's readiness checks (storage included) all pass."""
        try:
            return httpx.get(self.readiness_url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False


def find_registry_java(configured: str, fallback: str = "java") -> str:
    """A Java executable able to run Apicurio Registry (Java 21 or newer).

    `configured` (a setting), unless empty, is used as given and must qualify. Otherwise the first
    that qualifies of `fallback` (the broker's Java), $JAVA_HOME/bin/java and
    /usr/lib/jvm/*/bin/java.
    """
    if configured:
        version = java_major_version(configured)
        if version is None or version < REGISTRY_MIN_JAVA:
            raise ConfigurationError(
                f"{configured} is Java {version or 'unknown'}; Apicurio Registry needs Java "
                f"{REGISTRY_MIN_JAVA} or newer"
            )
        return configured
    tried = []
    for candidate in _java_candidates(fallback):
        version = java_major_version(candidate)
        if version is not None and version >= REGISTRY_MIN_JAVA:
            return candidate
        tried.append(f"{candidate} ({'Java ' + str(version) if version else 'not runnable'})")
    raise ConfigurationError(
        f"no Java {REGISTRY_MIN_JAVA}+ for Apicurio Registry; tried {', '.join(tried)} "
        f"(install openjdk-21-jre-headless or set local.registry_java)"
    )


def _java_candidates(fallback: str) -> Iterable[str]:
    seen: set[str] = set()
    java_home = os.environ.get("JAVA_HOME")
    listed = [fallback]
    if java_home:
        listed.append(str(Path(java_home) / "bin" / "java"))
    listed += sorted(glob.glob("/usr/lib/jvm/*/bin/java"), reverse=True)
    for candidate in listed:
        real = os.path.realpath(candidate) if os.path.sep in candidate else candidate
        if real not in seen:
            seen.add(real)
            yield candidate


@functools.cache
def java_major_version(java: str) -> int | None:
    """The feature release of `java` (17, 21, 25), None if it does not run."""
    try:
        result = subprocess.run(
            [java, "-XshowSettings:properties", "-version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"java\.specification\.version = (\d+)", result.stderr + result.stdout)
    return int(match[1]) if match else None

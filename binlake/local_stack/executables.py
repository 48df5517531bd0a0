"""The programs the local stack runs: find them (or say which one is missing and how to get
it), and run the one-off setup commands that prepare a component's home."""

from __future__ import annotations

import os
import shutil
import subprocess

from binlake.errors import ConfigurationError

# Debian installs mariadbd in /usr/sbin, which is not on an unprivileged user's PATH.
_EXTRA_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_HOW_TO_GET = {
    "mariadbd": "apt-get install mariadb-server",
    "mariadb-install-db": "apt-get install mariadb-server",
    "java": "apt-get install openjdk-17-jre-headless",
}


def find_executable(name: str) -> str:
    """Absolute path of `name` (a name looked up on PATH and sbin dirs, or a path)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_DIRS])
    found = shutil.which(name, path=search)
    if found is None:
        hint = _HOW_TO_GET.get(os.path.basename(name), "install it or set its path in settings")
        raise ConfigurationError(
            f"{name} not found on PATH or in {', '.join(_EXTRA_DIRS)} ({hint})"
        )
    return found


def run_setup_command(command: list[str], what: str) -> None:
    """Run `command` to completion; ConfigurationError naming `what` and the end of its output
    if it fails."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConfigurationError(
            f"{what} failed ({result.returncode}): {(result.stdout + result.stderr)[-2000:]}"
        )

"""Find the programs the local stack runs, or say which one is missing and how to get it."""

from __future__ import annotations

import os
import shutil

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

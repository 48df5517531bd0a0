"""The settings a running stack was started with, kept in its state directory.

Ports set to 0 are resolved to free ones at `binlake up`; `status`, `demo` and `down` must talk to
the ports actually chosen, so the resolved settings are written next to the stack's state
(readable by the owner only, since they include passwords).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from binlake.errors import ConfigurationError
from binlake.local_stack.network import free_port, port_is_free
from binlake.local_stack.s3_server import (
    DEFAULT_REGION,
    GRPC_PORT_OFFSET,
    LOCAL_S3_ACCESS_KEY,
    LOCAL_S3_LAKE_URL,
    LOCAL_S3_SECRET_KEY,
    free_s3_port,
)
from binlake.settings import Settings

RUNTIME_FILE = "runtime-settings.json"


def resolve_free_ports(settings: Settings) -> Settings:
    """A copy of `settings` with every port that is 0 replaced by a free one, capturing the local
    source as what it is: MariaDB.

    A port this state directory's stack used before is taken again while it is free: the
    addresses stay put across `down` and `up`, and so does what Kafka Connect stored of them.
    """
    previous = load_runtime_settings(settings)

    def port_for(configured: int, used_before: int) -> int:
        if configured:
            return configured
        return used_before if used_before and port_is_free(used_before) else free_port()

    data = settings.model_dump(mode="python")
    data["mysql"]["flavor"] = "mariadb"
    data["state_dir"] = settings.state_dir.resolve()
    if not data["storage_url"]:
        data["storage_url"] = settings.lake_url
    data["mysql"]["port"] = port_for(settings.mysql.port, previous.mysql.port)
    host = settings.kafka.bootstrap_servers.rsplit(":", 1)[0]
    data["kafka"]["bootstrap_servers"] = (
        f"{host}:{port_for(settings.kafka.port, previous.kafka.port)}"
        if settings.kafka.port == 0
        else settings.kafka.bootstrap_servers
    )
    if settings.connect.port == 0:
        data["connect"]["url"] = f"http://127.0.0.1:{port_for(0, previous.connect.port)}"
    data["dagster"]["port"] = port_for(settings.dagster.port, previous.dagster.port)
    data["sql"]["port"] = port_for(settings.sql.port, previous.sql.port)
    if settings.local.object_store:
        _lake_on_the_local_s3_server(settings, previous, data)
    return Settings(**_revealed(data))


def _lake_on_the_local_s3_server(settings: Settings, previous: Settings, data: dict) -> None:
    """Point `data` (a settings dump) at the local S3 server: its port (kept across `down` and
    `up` while free, like the others), bucket and local keys."""
    if settings.storage_url:
        raise ConfigurationError(
            f"local.object_store runs its own S3 server for the lake; leave storage_url "
            f"({settings.storage_url}) unset"
        )
    port = settings.local.s3_port
    if not port:
        before = previous.local.s3_port
        free = before and port_is_free(before) and port_is_free(before + GRPC_PORT_OFFSET)
        port = before if free else free_s3_port()
    data["local"]["s3_port"] = port
    data["storage_url"] = LOCAL_S3_LAKE_URL
    data["storage"] = {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "region": DEFAULT_REGION,
        "allow_http": True,
        "access_key_id": LOCAL_S3_ACCESS_KEY,
        "secret_access_key": LOCAL_S3_SECRET_KEY,
        "session_token": "",
        "profile": "",
    }


def save_runtime_settings(settings: Settings) -> Path:
    path = settings.state_dir / RUNTIME_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = _revealed(settings.model_dump(mode="python"))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(payload, out, indent=2, default=str)
    return path


def _revealed(value: Any) -> Any:
    """`value` (a settings dump) with every secret as its plain value, for the children."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {key: _revealed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_revealed(item) for item in value]
    return value


def load_runtime_settings(settings: Settings) -> Settings:
    """The settings of the stack running under `settings.state_dir`, or `settings` if none."""
    path = settings.state_dir / RUNTIME_FILE
    if not path.exists():
        return settings
    return Settings(**json.loads(path.read_text()))

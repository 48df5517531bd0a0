"""A single-node Apache Kafka broker in KRaft mode (broker and controller in one process).

Its data lives under a home directory that outlives the process, so a stopped broker comes back
with its topics, consumer-group offsets and Kafka Connect's offsets: the lake continues. The
storage is formatted once (`StorageTool format --standalone`); the controller port, chosen free
the first time, is kept in the home with the data, because the quorum's voter record names it.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from binlake.local_stack.executables import run_setup_command
from binlake.local_stack.network import free_port

LOG4J2_CONFIG = Path(str(resources.files("binlake.local_stack") / "log4j2.properties"))
NODE_ID = 1
CONTROLLER_PORT_FILE = "controller-port"


@dataclass(frozen=True)
class KafkaBroker:
    """How one broker home is laid out and launched."""

    home: Path
    host: str
    port: int
    classpath: Path
    java: str = "java"
    heap: str = "512m"
    message_max_bytes: int = 1024 * 1024 + 64 * 1024

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    def prepare(self) -> list[str]:
        """Write the configuration, format the storage if new; returns the command to run."""
        self.home.mkdir(parents=True, exist_ok=True)
        controller_port = self._controller_port()
        listeners = (
            f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{controller_port}"
        )
        properties = {
            "process.roles": "broker,controller",
            "node.id": str(NODE_ID),
            "controller.quorum.bootstrap.servers": f"{self.host}:{controller_port}",
            "listeners": listeners,
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            # One node: every internal topic has one replica. One partition each keeps the
            # first group join and the first transaction quick on a small machine.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "1",
            # The largest change record the lake carries (kafka.max_record_bytes + framing).
            "message.max.bytes": str(self.message_max_bytes),
            "replica.fetch.max.bytes": str(self.message_max_bytes),
        }
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        if not (self.data_dir / "meta.properties").exists():
            self._format()
        return self.command()

    def command(self) -> list[str]:
        return [
            self.java,
            f"-Xmx{self.heap}",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            "-cp",
            f"{self.classpath}/*",
            "kafka.Kafka",
            str(self.config_file),
        ]

    def _controller_port(self) -> int:
        path = self.home / CONTROLLER_PORT_FILE
        if path.exists():
            return int(path.read_text().strip())
        port = free_port()
        path.write_text(f"{port}\n")
        return port

    def _format(self) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        run_setup_command(
            [
                self.java,
                f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
                "-cp",
                f"{self.classpath}/*",
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                # One argument: a random id may start with "-" (1 in 64), read as an option.
                f"--cluster-id={cluster_id}",
                "--config",
                str(self.config_file),
            ],
            f"formatting the Kafka storage in {self.data_dir}",
        )

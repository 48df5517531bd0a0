"""The KRaft broker's home: configured from settings, formatted once, its controller port kept
(the quorum's voter record names it). Formatting runs Kafka's real StorageTool."""

from __future__ import annotations

from binlake.jvm_artifacts import ensure_jvm_artifacts
from binlake.local_stack.kafka_broker import KafkaBroker
from binlake.settings import LocalStackSettings


def broker(tmp_path, port: int) -> KafkaBroker:
    local = LocalStackSettings()
    classpath = ensure_jvm_artifacts(local.jvm_cache_dir, maven=local.maven).classpath
    return KafkaBroker(
        home=tmp_path / "kafka",
        host="127.0.0.1",
        port=port,
        classpath=classpath,
        message_max_bytes=5_000_000,
    )


def properties(path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_prepared_once_and_kept_across_restarts(tmp_path) -> None:
    first = broker(tmp_path, 19_001)
    command = first.prepare()
    config = properties(first.config_file)
    meta = (first.data_dir / "meta.properties").read_text()
    assert config["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19001"
    assert config["message.max.bytes"] == "5000000"
    assert command[-2:] == ["kafka.Kafka", str(first.config_file)]

    again = broker(tmp_path, 19_002)  # a new client port at the next `up`
    again.prepare()
    config_again = properties(again.config_file)
    assert (first.data_dir / "meta.properties").read_text() == meta  # not formatted again
    assert (
        config_again["controller.quorum.bootstrap.servers"]
        == (config["controller.quorum.bootstrap.servers"])
    )
    assert config_again["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19002"

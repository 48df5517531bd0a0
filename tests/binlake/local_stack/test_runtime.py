from binlake.local_stack.runtime import (
    load_runtime_settings,
    resolve_free_ports,
    save_runtime_settings,
)
from binlake.settings import load_settings


def test_zero_ports_are_resolved_and_kept_for_later_commands(tmp_path) -> None:
    settings = load_settings(
        state_dir=tmp_path,
        mysql={"port": 0, "password": "pw"},
        kafka={"bootstrap_servers": "127.0.0.1:0"},
        connect={"url": "http://127.0.0.1:0"},
        dagster={"port": 0},
    )
    resolved = resolve_free_ports(settings)
    ports = [resolved.mysql.port, resolved.kafka.port, resolved.connect.port, resolved.dagster.port]
    assert all(port > 0 for port in ports) and len(set(ports)) == 4
    path = save_runtime_settings(resolved)
    assert path.stat().st_mode & 0o077 == 0  # holds passwords: owner only
    again = load_runtime_settings(load_settings(state_dir=tmp_path))
    assert again.model_dump() == resolved.model_dump()
    assert again.mysql.password.get_secret_value() == "pw"


def test_without_a_running_stack_settings_are_unchanged(tmp_path) -> None:
    settings = load_settings(state_dir=tmp_path)
    assert load_runtime_settings(settings) is settings

"""What the local stack writes for its components, read back by the components themselves."""

from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef

from binlake.local_stack.components import (
    BRONZE_WORKER,
    MARIADB,
    S3,
    START_ORDER,
    STOP_STAGES,
    write_dagster_instance_config,
)
from binlake.settings import load_settings


def test_the_local_dagster_instance_sends_no_telemetry_and_shows_no_pop_up(tmp_path) -> None:
    path = write_dagster_instance_config(load_settings(state_dir=tmp_path))

    # Dagster's own loader validates the file against its schema (an unknown key fails here).
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(path.parent))) as instance:
        assert instance.telemetry_enabled is False
        assert instance.nux_enabled is False


def test_down_stops_every_component_once_the_worker_first_and_the_lake_server_last() -> None:
    stopped = [name for stage in STOP_STAGES for name in stage]
    assert sorted(stopped) == sorted(START_ORDER)
    assert STOP_STAGES[0] == (BRONZE_WORKER,)
    assert stopped[-2:] == [MARIADB, S3]

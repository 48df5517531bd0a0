"""The ``consumer_group_replay`` job: dry run by default, a reset when asked, clear refusals.
Kafka faked here; tests/integration/test_replay_real_broker.py runs the job against a real
broker."""

import dagster as dg
import pytest

from binlake.settings import load_settings
from dagster_defs.replay.jobs import REPLAY_TAG, build_replay_job
from dagster_defs.replay.resources import KafkaConsumerGroups
from tests.support.replay import FakeKafka, entry


class FakeGroups(KafkaConsumerGroups):
    def client(self):
        return FAKE[0]


FAKE: list[FakeKafka] = []


@pytest.fixture
def kafka():
    FAKE[:] = [FakeKafka()]
    yield FAKE[0]
    FAKE.clear()


def run(settings, **config):
    return build_replay_job(settings).execute_in_process(
        run_config={"ops": {"reset_consumer_group": {"config": config}}},
        resources={"kafka": FakeGroups(bootstrap_servers="unused:9092")},
        raise_on_error=False,
    )


def plan_metadata(result: dg.ExecuteInProcessResult) -> dict:
    [materialized] = [
        e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT
    ]
    return materialized.step_output_data.metadata


def test_by_default_it_only_shows_the_plan(lake, kafka) -> None:
    settings, storage = lake
    storage.filesystem.delete_file(storage.full_path(entry(10, 19).path))
    result = run(settings, table="shop.orders", from_offset="0:12")
    assert result.success
    assert kafka.resets == []
    metadata = plan_metadata(result)
    assert metadata["dry_run"].value is True and metadata["lost_files_to_write_again"].value == 1
    plan = metadata["plan"].value
    assert "| 0 | 40 | 10 | moved back from 12" in plan and entry(10, 19).path in plan


def test_it_resets_when_asked_and_runs_one_at_a_time(lake, kafka) -> None:
    settings, _ = lake
    result = run(settings, table="shop.orders", from_offset="1:2", group="dash", dry_run=False)
    assert result.success
    assert kafka.resets == [{1: 2}]
    assert result.output_for_node("reset_consumer_group") == {"1": 2}
    assert build_replay_job(settings).tags[REPLAY_TAG] == "true"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"table": "shop.nope", "from_offset": "0:1"}, "unknown table 'shop.nope'"),
        ({"table": "shop.orders", "from_offset": "zero"}, "is not P:O"),
        ({"table": "shop.orders", "from_time": "soon"}, "is not an ISO 8601 time"),
        ({"table": "shop.orders"}, "exactly one of"),
    ],
)
def test_a_bad_request_fails_naming_what_is_wrong(lake, kafka, config, message) -> None:
    settings, _ = lake
    result = run(settings, dry_run=False, **config)
    assert not result.success and kafka.resets == []
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert message in failure.step_failure_data.error.message


def test_a_group_in_use_is_not_moved(lake, kafka) -> None:
    settings, _ = lake
    kafka.state = "STABLE"
    result = run(settings, table="shop.orders", from_offset="0:3", dry_run=False)
    assert not result.success and kafka.resets == []
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "'binlake-bronze' is in use" in failure.step_failure_data.error.message


def test_the_job_is_in_the_code_location(tmp_path) -> None:
    from dagster_defs.definitions import build_definitions

    settings = load_settings(storage_url=str(tmp_path / "lake"), state_dir=tmp_path / "state")
    defs = build_definitions(settings)
    assert defs.resolve_job_def("consumer_group_replay").tags[REPLAY_TAG] == "true"

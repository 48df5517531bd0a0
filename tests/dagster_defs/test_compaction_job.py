"""The compaction job and sensor in Dagster, on real bronze files."""

from datetime import UTC, datetime

import dagster as dg

from binlake.bronze.manifest import Manifest
from binlake.storage import LakeStorage
from dagster_defs.compaction.jobs import COMPACTION_JOB_NAME, COMPACTION_TAG
from dagster_defs.compaction.sensors import COMPACTION_SENSOR_NAME
from dagster_defs.definitions import build_definitions
from tests.support.lake import with_retention


def write_old_small_files(bronze, count: int = 3) -> None:
    # the fixture's files are in hour 2024-06-01 10:00, long closed
    for n in range(count):
        bronze.write("shop.orders", [bronze.change("c", n, id=n, status="new")])


def test_sensor_requests_one_run_per_set_of_files_and_the_job_compacts(settings, bronze):
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def(COMPACTION_SENSOR_NAME)
    with dg.DagsterInstance.ephemeral() as instance:
        assert sensor(dg.build_sensor_context(instance=instance)).skip_reason is not None
        write_old_small_files(bronze)
        first = sensor(dg.build_sensor_context(instance=instance)).run_requests
        again = sensor(dg.build_sensor_context(instance=instance)).run_requests
        assert len(first) == 1 and first[0].run_key == again[0].run_key

        job = defs.resolve_job_def(COMPACTION_JOB_NAME)
        assert job.tags[COMPACTION_TAG] == "true"
        result = job.execute_in_process(instance=instance)
        assert result.success
        assert result.output_for_node("compact_closed_bronze_hours")["files_replaced"] == 3
        assert sensor(dg.build_sensor_context(instance=instance)).skip_reason is not None

    [entry] = Manifest(LakeStorage.from_url(settings.lake_url)).entries_for("shop.orders")
    assert entry.rows == 3 and entry.written_at <= datetime.now(UTC).timestamp()


def test_files_past_the_bronze_retention_get_a_run_that_expires_them(settings, bronze):
    settings = with_retention(settings, days=30)
    write_old_small_files(bronze, count=1)  # nothing to compact, but years old
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def(COMPACTION_SENSOR_NAME)
    with dg.DagsterInstance.ephemeral() as instance:
        assert len(sensor(dg.build_sensor_context(instance=instance)).run_requests) == 1
        result = defs.resolve_job_def(COMPACTION_JOB_NAME).execute_in_process(instance=instance)
        output = result.output_for_node("compact_closed_bronze_hours")
        assert (output["files_expired"], output["rows_expired"]) == (1, 1)
        assert sensor(dg.build_sensor_context(instance=instance)).skip_reason is not None

    assert Manifest(LakeStorage.from_url(settings.lake_url)).entries_for("shop.orders") == []

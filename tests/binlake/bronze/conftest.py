"""Fixtures of the bronze engine tests: Debezium record builders (`dbz`), the partition
writer's flaky lake and fake clock (`storage`, `manifest`, `clock`) and the replay tests' lake of
four bronze files (`lake`)."""

from tests.support.partition_writer import clock, manifest, storage  # noqa: F401 - fixtures
from tests.support.record_fixtures import dbz  # noqa: F401 - fixture
from tests.support.replay import lake  # noqa: F401 - fixture

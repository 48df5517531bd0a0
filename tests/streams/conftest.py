"""Fixtures of the bronze worker tests: Debezium record builders (`dbz`), the partition
writer's flaky lake and fake clock (`storage`, `manifest`, `clock`), the test's own names on the
session's broker (`kafka`), the processes it started (`processes`) and the real worker kit
(`bronze_kit`), all from tests/support."""

from tests.support.partition_writer import clock, manifest, storage  # noqa: F401 - fixtures
from tests.support.processes import processes  # noqa: F401 - fixture
from tests.support.record_fixtures import dbz  # noqa: F401 - fixture
from tests.support.worker import bronze_kit, kafka  # noqa: F401 - fixtures

"""Fixtures of the integration tests: the real local stack (`running_stack`, `edge_stack`), the
real bronze worker on the session's broker (`kafka`, `processes`, `bronze_kit`) and Debezium
record builders (`dbz`) and a real S3 server (`s3_server`, `s3_lake`), all from tests/support."""

from tests.support.processes import processes  # noqa: F401 - fixture
from tests.support.record_fixtures import dbz  # noqa: F401 - fixture
from tests.support.s3_server import s3_lake, s3_server  # noqa: F401 - fixtures
from tests.support.stack import edge_stack, running_stack  # noqa: F401 - fixtures
from tests.support.worker import bronze_kit, kafka  # noqa: F401 - fixtures

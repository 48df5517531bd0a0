"""Fixtures of the Dagster definitions' tests: a real lake in tmp_path (`settings`, `bronze`,
`keyless_settings`), the code location's resources with fake outside sources (`fake_mysql`,
`resources`), the replay tests' lake of four bronze files (`lake`), and a real S3 server
(`s3_server`, `s3_lake`)."""

from tests.support.lake import bronze, keyless_settings, settings  # noqa: F401 - fixtures
from tests.support.replay import lake  # noqa: F401 - fixture
from tests.support.resources import fake_mysql, resources  # noqa: F401 - fixtures
from tests.support.s3_server import s3_lake, s3_server, s3_settings  # noqa: F401 - fixtures

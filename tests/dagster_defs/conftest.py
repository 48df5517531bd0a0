"""Fixtures of the Dagster definitions' tests: a real lake in tmp_path (`settings`, `bronze`,
`keyless_settings`), the code location's resources with fake outside sources (`fake_mysql`,
`resources`), and the replay tests' lake of four bronze files (`lake`)."""

from tests.support.lake import bronze, keyless_settings, settings  # noqa: F401 - fixtures
from tests.support.replay import lake  # noqa: F401 - fixture
from tests.support.resources import fake_mysql, resources  # noqa: F401 - fixtures

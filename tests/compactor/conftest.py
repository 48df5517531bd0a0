"""Real bronze files written the way the bronze worker writes them (shared with dagster_defs)."""

from tests.dagster_defs.conftest import bronze, settings  # noqa: F401 - fixtures

"""Fixtures of the compactor tests: a real lake in tmp_path and bronze files written the way
the bronze worker writes them (`settings`, `bronze`)."""

from tests.support.lake import bronze, settings  # noqa: F401 - fixtures

"""Fixtures of the kernel and shell tests: a real lake in tmp_path (`settings`, `bronze`)."""

from tests.support.lake import bronze, settings  # noqa: F401 - fixtures

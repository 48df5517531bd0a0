"""Fixtures of the SQL tests: a real lake in tmp_path (`settings`), processes a test starts,
and the SQL endpoint as a process over that lake (`sql_endpoint`)."""

from tests.support.lake import settings  # noqa: F401 - fixtures
from tests.support.processes import processes  # noqa: F401 - fixtures
from tests.support.sql_endpoint import sql_endpoint  # noqa: F401 - fixtures

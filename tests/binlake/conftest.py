"""Fixtures of the kernel and shell tests: a real lake in tmp_path (`settings`, `bronze`) and a
real S3 server (`s3_server`, one per session; `s3_lake`, a fresh prefix per test)."""

from tests.support.lake import bronze, settings  # noqa: F401 - fixtures
from tests.support.s3_server import s3_lake, s3_server, s3_settings  # noqa: F401 - fixtures

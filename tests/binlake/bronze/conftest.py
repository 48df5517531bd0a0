"""Fixtures of the bronze engine tests."""

from tests.streams.conftest import dbz  # noqa: F401 - fixture

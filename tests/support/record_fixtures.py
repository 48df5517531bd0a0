"""Fixture `dbz`: the Debezium record builders of tests/support/debezium.py for a test (that
module stays free of pytest: the benchmarks build their records with it too)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.support.debezium import (
    BASE_TS_MS,
    HOUR_MS,
    PREFIX,
    DebeziumTable,
    connect_field,
    schema_change_value,
)


@pytest.fixture
def dbz() -> SimpleNamespace:
    """Record builders: `dbz.table(...)`, `dbz.schema_change_value()`, constants."""
    return SimpleNamespace(
        table=DebeziumTable,
        column=connect_field,
        schema_change_value=schema_change_value,
        PREFIX=PREFIX,
        BASE_TS_MS=BASE_TS_MS,
        HOUR_MS=HOUR_MS,
    )

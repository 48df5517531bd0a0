"""Reconciliation check wiring, with a fake MySQL source (unit level; the SQL side is tested
against real MariaDB in tests/integration/test_reconciliation.py)."""

import socket

import dagster as dg
import pytest

from binlake.errors import ConfigurationError, RetriableError
from dagster_defs.resources import MySQLSource
from tests.support.reconciliation import run_check


def test_passes_when_counts_match_on_a_quiet_source(bronze, resources):
    evaluation = run_check(bronze, resources, source_rows=2)
    assert evaluation.passed
    metadata = {k: v.value for k, v in evaluation.metadata.items()}
    assert (metadata["silver_rows"], metadata["source_rows"], metadata["difference"]) == (2, 2, 0)
    assert metadata["source_quiet"] is True


def test_fails_with_error_severity_on_mismatch(bronze, resources):
    evaluation = run_check(bronze, resources, source_rows=5)
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["difference"].value == -3


def test_a_busy_source_gets_the_tolerance_a_quiet_one_does_not(bronze, resources):
    # 1% of 300 source rows = 3 rows of slack while the source committed a second ago
    busy = run_check(bronze, resources, source_rows=5, commit_age_seconds=1)
    assert not busy.passed  # 3 rows off with 0 allowed (1% of 5)
    bronze.settings.silver.reconcile_tolerance = 0.5
    busy = run_check(bronze, resources, source_rows=3, commit_age_seconds=1)
    assert busy.passed and busy.metadata["tolerance_rows"].value == 1
    quiet = run_check(bronze, resources, source_rows=3, commit_age_seconds=3600)
    assert not quiet.passed


def test_count_rows_refuses_unsafe_table_names():
    source = MySQLSource(host="127.0.0.1", port=1, user="u", password="p")
    with pytest.raises(ConfigurationError):
        source.count_rows("shop.orders; DROP TABLE x")


def test_unreachable_source_is_retriable():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = MySQLSource(
        host="127.0.0.1", port=port, user="u", password="p", connect_timeout_seconds=2
    )
    with pytest.raises(RetriableError):
        source.count_rows("shop.orders")

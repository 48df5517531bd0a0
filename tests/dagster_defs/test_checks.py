"""Row-count reconciliation check, with a fake MySQL source (unit level)."""

import socket

import dagster as dg
import pytest

from binlake.errors import ConfigurationError, RetriableError
from dagster_defs.keys import silver_key
from dagster_defs.resources import MySQLSource
from dagster_defs.silver.assets import build_silver_asset
from dagster_defs.silver.checks import ROW_COUNT_CHECK, build_row_count_check


def run_check(bronze, resources, source_rows: int) -> dg.AssetCheckEvaluation:
    c = bronze.change
    bronze.write(
        "shop.orders", [c("c", 0, id=1), c("c", 1, id=2), c("c", 2, id=3), c("d", 3, id=3)]
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [build_silver_asset("shop.orders"), build_row_count_check("shop.orders")],
            resources=resources({"shop.orders": source_rows}),
            instance=instance,
            raise_on_error=False,
        )
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == ROW_COUNT_CHECK
    assert evaluation.asset_key == silver_key("shop.orders")
    return evaluation


def test_passes_when_counts_match(bronze, resources):
    evaluation = run_check(bronze, resources, source_rows=2)
    assert evaluation.passed
    assert {k: v.value for k, v in evaluation.metadata.items()} == {
        "silver_rows": 2,
        "source_rows": 2,
        "difference": 0,
    }


def test_fails_with_error_severity_on_mismatch(bronze, resources):
    evaluation = run_check(bronze, resources, source_rows=5)
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["difference"].value == -3


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

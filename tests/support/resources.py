"""Fakes of the Dagster code location's outside resources for unit tests: the MySQL source
(fixed row counts, a last commit some seconds ago) and Kafka's consumer lag; fixture `resources`
builds the code location's resources with both replaced."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from binlake.bronze.consumer_lag import TableLag, table_lag
from binlake.settings import Settings
from dagster_defs.resources import (
    CONSUMER_LAG,
    MYSQL_SOURCE,
    ConsumerLagSource,
    MySQLSource,
    build_resources,
)


class FakeMySQLSource(MySQLSource):
    """Stands in for the source database in unit tests: fixed row counts per table, no columns
    to hash, and a last commit `commit_age_seconds` ago (None: unknown, i.e. quiet)."""

    counts: dict[str, int]
    last_commit_epoch: float | None = None

    def count_rows(self, table: str) -> int:
        return self.counts.get(table, 0)

    def column_types(self, table: str) -> list[tuple[str, str, int | None]]:
        return []

    def content_digest(self, table: str, columns: list) -> tuple[int, int]:
        return self.count_rows(table), 0

    def last_commit_time(self, table: str) -> datetime | None:
        if self.last_commit_epoch is None:
            return None
        return datetime.fromtimestamp(self.last_commit_epoch, tz=UTC)

    def query(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError("the fake source answers count_rows only")


class FakeConsumerLag(ConsumerLagSource):
    """Stands in for Kafka in unit tests: per table, seconds and records the bronze writer is
    behind; a table with neither has no topic."""

    seconds: dict[str, float]
    records: dict[str, int]

    def measure(self, tables) -> dict[str, TableLag | str]:
        lags: dict[str, TableLag | str] = {}
        for table in tables:
            topic = f"{self.topic_prefix}.{table}"
            if table not in self.seconds and table not in self.records:
                lags[table] = table_lag(table, topic, self.group, None)
                continue
            records = self.records.get(table, 0)
            lags[table] = TableLag(
                table, topic, self.group, "ok", records, True, records,
                self.seconds.get(table), None, None,
            )  # fmt: skip
        return lags


def consumer_lag(
    seconds: dict[str, float] | None = None, records: dict[str, int] | None = None
) -> FakeConsumerLag:
    return FakeConsumerLag(
        bootstrap_servers="fake:9092",
        group="binlake-bronze",
        topic_prefix="binlake",
        seconds=seconds or {},
        records=records or {},
    )


@pytest.fixture
def fake_mysql() -> Callable[[dict[str, int]], MySQLSource]:
    def make(counts: dict[str, int], commit_age_seconds: float | None = None) -> MySQLSource:
        return FakeMySQLSource(
            host="fake",
            port=0,
            user="fake",
            password="",
            counts=counts,
            last_commit_epoch=None
            if commit_age_seconds is None
            else (datetime.now(UTC) - timedelta(seconds=commit_age_seconds)).timestamp(),
        )

    return make


@pytest.fixture
def resources(settings: Settings, fake_mysql) -> Callable[..., dict[str, Any]]:
    """The code location's resources, with the MySQL source replaced by a fake."""

    def make(
        counts: dict[str, int] | None = None, commit_age_seconds: float | None = None
    ) -> dict[str, Any]:
        return {
            **build_resources(settings),
            MYSQL_SOURCE: fake_mysql(counts or {}, commit_age_seconds),
            CONSUMER_LAG: consumer_lag(),
        }

    return make

"""Every query of the provisioned Grafana dashboard (deploy/grafana/dashboards/binlake.json),
its Grafana macros expanded as the ClickHouse data source plugin expands them, answers from the
lake's views through the SQL endpoint (`binlake sql-endpoint`, a real process over real Delta
tables: silver merged by binlake, gold and the freshness table in their contract layouts)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from binlake.settings import Settings
from tests.support.lake import settings  # noqa: F401 - fixtures
from tests.support.processes import processes  # noqa: F401 - fixtures
from tests.support.sql_endpoint import SqlEndpointProcess, merge_silver, orders, sql_endpoint  # noqa: F401
from tests.support.sql_lake import GOLD_HOURS, write_freshness, write_gold

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy/grafana/dashboards/binlake.json"
# The dashboard's time range in the test: the day holding the gold hours.
RANGE = (datetime(2026, 12, 7, tzinfo=UTC), datetime(2026, 12, 8, tzinfo=UTC))


def expand_macros(sql: str, start: datetime, end: datetime, interval_s: int = 60) -> str:
    """The SQL the grafana-clickhouse-datasource plugin sends for `sql` over [start, end]."""
    lo, hi = int(start.timestamp()), int(end.timestamp())
    expansions = {
        r"\$__timeFilter\(([^)]+)\)": rf"\1 >= toDateTime({lo}) AND \1 <= toDateTime({hi})",
        r"\$__dateFilter\(([^)]+)\)": rf"\1 >= toDate({lo}) AND \1 <= toDate({hi})",
        r"\$__timeInterval\(([^)]+)\)": (
            rf"toStartOfInterval(toDateTime(\1), INTERVAL {interval_s} second)"
        ),
        r"\$__fromTime\b": f"toDateTime({lo})",
        r"\$__toTime\b": f"toDateTime({hi})",
        r"\$__interval_s\b": str(interval_s),
    }
    for macro, replacement in expansions.items():
        sql = re.sub(macro, replacement, sql)
    assert "$" not in sql, f"a macro or variable the test does not expand: {sql}"
    return sql


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(panel title, query type, SQL) of every target of every panel."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["queryType"], target["rawSql"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def test_macros_expand_as_the_plugin_does() -> None:
    sql = "SELECT 1 FROM t WHERE $__timeFilter(hour) AND x < $__toTime"
    assert expand_macros(sql, *RANGE) == (
        "SELECT 1 FROM t WHERE hour >= toDateTime(1796601600) AND hour <= "
        "toDateTime(1796688000) AND x < toDateTime(1796688000)"
    )


def test_every_dashboard_query_answers_from_the_views(
    settings: Settings,  # noqa: F811 - fixture
    sql_endpoint: SqlEndpointProcess,  # noqa: F811 - fixture
) -> None:
    lake = Path(settings.lake_url)
    merge_silver(settings, "shop.orders", [orders(1, "c", 1, "new"), orders(2, "c", 2, "paid")])
    write_gold(lake)
    write_freshness(lake)
    queries = dashboard_queries()
    assert len(queries) == 5
    answers = {}
    for title, query_type, sql in queries:
        response = sql_endpoint.post(expand_macros(sql, *RANGE) + "\nFORMAT JSON")
        assert response.status_code == 200, f"{title}: {response.text}"
        answer = response.json()
        columns = [column["name"] for column in answer["meta"]]
        assert answer["data"], f"{title}: no rows"
        if query_type == "timeseries":
            # Grafana's time series: a time column, the series label, the measure.
            assert columns[:2] == ["time", "status"], title
            assert len({row["time"] for row in answer["data"]}) == len(GOLD_HOURS), title
        answers[title] = (columns, answer["data"])
    totals_columns, (totals,) = answers["Orders, revenue and items in the range"]
    assert totals_columns == ["orders", "revenue", "items"]
    assert (int(totals["orders"]), float(totals["revenue"]), int(totals["items"])) == (
        10,
        101.49,
        14,
    )
    revenue_columns, revenue = answers["Revenue by hour and status"]
    assert revenue_columns == ["time", "status", "revenue"]
    assert {row["status"] for row in revenue} == {"new", "paid"}
    freshness_columns, freshness = answers["Freshness per table (lag behind the source)"]
    assert freshness_columns == [
        "layer",
        "asset",
        "source_tables",
        "newest_source_commit",
        "lag_seconds",
        "slo_seconds",
        "passed",
        "checked_at",
    ]
    # Failing checks first.
    assert [row["passed"] for row in freshness] == [False, True]
    # Outside the range the gold panels are empty, not failing.
    empty = expand_macros(queries[1][2], datetime(2020, 1, 1, tzinfo=UTC), RANGE[0])
    assert sql_endpoint.post(empty + "\nFORMAT JSON").json()["data"] == []

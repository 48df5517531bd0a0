"""The view set rendered from the settings: names, what each reads, and only existing tables."""

from __future__ import annotations

import pytest

from binlake.settings import Settings
from binlake.sql.views import lake_views, named_collection_sql, render_views_sql
from tests.support.sql_endpoint import merge_silver, orders


def test_only_tables_with_a_delta_log_get_views_unless_all_are_asked_for(settings):
    assert lake_views(settings, target="embedded") == []
    merge_silver(settings, "shop.orders", [orders(0, "c", 1, "new")])
    assert [v.name for v in lake_views(settings, target="embedded")] == [
        "shop__orders",
        "shop__orders__provenance",
    ]
    every = [v.name for v in lake_views(settings, target="server", existing_only=False)]
    assert every[:2] == ["shop__customers", "shop__customers__provenance"]
    assert every[-2:] == ["gold__orders_by_hour_status", "freshness"]
    assert not any(name.endswith("__history") for name in every)


def test_history_views_where_configured(settings):
    configured = settings.model_copy(
        update={"silver": settings.silver.model_copy(update={"history_tables": ["shop.orders"]})}
    )
    names = [v.name for v in lake_views(configured, target="server", existing_only=False)]
    assert "shop__orders__history" in names
    assert "shop__customers__history" not in names


def test_local_lake_reads_delta_local_and_hides_tombstones(settings):
    sql = render_views_sql(
        lake_views(settings, target="server", existing_only=False), target="server"
    )
    assert sql.startswith("CREATE DATABASE IF NOT EXISTS lake;\n")
    line = next(s for s in sql.splitlines() if "lake.`shop__orders` AS" in s)
    assert f"deltaLakeLocal('{settings.lake_url}/silver/shop/orders')" in line
    assert line.endswith("WHERE NOT _deleted;")
    assert "EXCEPT (_source_file, _source_pos, _source_row, _offset, _source_ts_ms, _op" in line


def test_s3_lake_reads_through_the_named_collection_and_no_key_is_in_a_view(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-visible-nowhere")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret")
    settings = Settings(
        storage_url="s3://lakebucket/prod",
        storage={"endpoint_url": "http://127.0.0.1:8333"},
    )
    for target in ("server", "embedded"):
        sql = render_views_sql(
            lake_views(settings, target=target, existing_only=False), target=target
        )
        assert (
            "deltaLake(binlake_lake, url = 'http://127.0.0.1:8333/lakebucket/prod/silver/shop/"
            "orders/')" in sql
        )
        assert "very-secret" not in sql and "AKIA" not in sql
    assert "very-secret" in named_collection_sql(settings)


def test_views_of_one_target_are_not_rendered_for_the_other(settings):
    views = lake_views(settings, target="server", existing_only=False)
    with pytest.raises(ValueError, match="made for server"):
        render_views_sql(views, target="embedded")

"""`binlake sql` prints the answer as a table, in process, with the endpoint's restrictions;
the `sql` settings refuse an empty password and reach child processes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from binlake.cli import app
from binlake.settings import Settings, SqlSettings
from tests.support.sql_endpoint import merge_silver, orders


def test_sql_prints_a_table_of_live_rows(settings):
    merge_silver(settings, "shop.orders", [orders(0, "c", 1, "new"), orders(1, "c", 2, "new")])
    merge_silver(settings, "shop.orders", [orders(2, "u", 2, "paid"), orders(3, "d", 1, "new")])
    result = CliRunner().invoke(app, ["sql", "SELECT id, status FROM lake.shop__orders"])
    assert result.exit_code == 0, result.output
    assert "│ 2  │ paid   │" in result.output
    assert "new" not in result.output
    assert "1 rows (in process, chDB 26." in result.output


def test_sql_refuses_what_the_endpoint_refuses(settings):
    merge_silver(settings, "shop.orders", [orders(0, "c", 1, "new")])
    result = CliRunner().invoke(app, ["sql", "SELECT * FROM file('/etc/passwd')"])
    assert result.exit_code == 1
    assert "refused table function file()" in result.output


def test_sql_settings_need_a_password_and_reach_children():
    with pytest.raises(ValidationError, match="password must not be empty"):
        SqlSettings(password="")
    settings = Settings(sql={"port": 18999, "password": "pw-hidden-42"})
    env = settings.env()
    assert env["BINLAKE_SQL__PORT"] == "18999"
    assert env["BINLAKE_SQL__PASSWORD"] == "pw-hidden-42"
    assert "pw-hidden-42" not in repr(settings)

"""Freshness is lag behind the source on the real stack: an idle source stays green long past
the old two-minute window, a stalled bronze worker turns the check red, and `binlake status` and
the freshness table (written by the real freshness sensor in the Dagster daemon) say the same."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from binlake.demo.shop_schema import SHOP_DDL
from binlake.freshness_table import FreshnessRow, read_freshness_rows
from binlake.local_stack.components import BRONZE_WORKER
from binlake.local_stack.stack import LocalStack
from binlake.source_db import connect_source
from binlake.storage import LakeStorage
from tests.support.stack import component, wait_for

pytestmark = pytest.mark.integration

ORDERS_BRONZE = "bronze/shop/orders"
ORDERS_SILVER = "silver/shop/orders"
IDLE_SECONDS = 150  # past the time-window policy binlake had (bronze 1 min, silver 2 min)


def _rows(stack: LocalStack, since: float) -> dict[str, FreshnessRow]:
    """The freshness table's rows by asset, once a tick after `since` wrote it (else empty)."""
    rows = read_freshness_rows(LakeStorage.from_url(stack.settings.lake_url)) or []
    if not rows or min(r.checked_at for r in rows) <= since:
        return {}
    return {r.asset: r for r in rows}


def _insert_order(stack: LocalStack, order_id: int) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    with (
        connect_source(stack.settings, admin=True, database="shop") as conn,
        conn.cursor() as cur,
    ):
        for ddl in SHOP_DDL:
            cur.execute(ddl)
        cur.execute(
            "INSERT INTO customers VALUES (%s, 'Fresh', 'fresh@example.com', %s, %s) "
            "ON DUPLICATE KEY UPDATE updated_at = VALUES(updated_at)",
            (order_id, now, now),
        )
        cur.execute(
            "INSERT INTO orders VALUES (%s, %s, 'new', %s, %s)", (order_id, order_id, now, now)
        )


def _status(stack: LocalStack, *args: str) -> str:
    env = {**os.environ, **stack.settings.env(), "COLUMNS": "80"}
    result = subprocess.run(
        [sys.executable, "-m", "binlake", "status", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    return result.stdout


def test_an_idle_source_stays_green_and_a_stalled_worker_turns_red(
    running_stack: LocalStack,
) -> None:
    stack = running_stack
    _insert_order(stack, 70_001)
    start = time.time()

    def caught_up() -> bool:
        rows = _rows(stack, start)
        return all(
            a in rows and rows[a].passed and rows[a].lag_seconds == 0
            for a in (ORDERS_BRONZE, ORDERS_SILVER)
        )

    wait_for("bronze and silver hold the new order (lag 0)", caught_up, timeout_s=300, every_s=5)

    # Idle: nothing written for longer than any old time window; still lag 0, still passing.
    idle_from = time.time()
    time.sleep(IDLE_SECONDS)
    wait_for("a tick after the idle period", lambda: bool(_rows(stack, idle_from + IDLE_SECONDS)))
    rows = _rows(stack, idle_from + IDLE_SECONDS)
    for asset in (ORDERS_BRONZE, ORDERS_SILVER):
        assert rows[asset].passed and rows[asset].lag_seconds == 0, rows[asset]
    page = json.loads(_status(stack, "--json"))
    failing = {f["check"] for f in page["failing_checks"]}
    assert f"{ORDERS_BRONZE}:freshness" not in failing
    assert f"{ORDERS_SILVER}:freshness" not in failing

    # Stalled: the bronze worker frozen (by its PID), a new commit it cannot take.
    worker = component(stack, BRONZE_WORKER)
    assert worker.pid
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        _insert_order(stack, 70_002)
        stalled_at = time.time()

        def bronze_fails() -> bool:
            row = _rows(stack, stalled_at).get(ORDERS_BRONZE)
            return row is not None and not row.passed

        wait_for("the bronze freshness check fails", bronze_fails, timeout_s=240, every_s=5)
        row = _rows(stack, stalled_at)[ORDERS_BRONZE]
        assert row.lag_seconds is not None and row.lag_seconds > row.slo_seconds
        text = _status(stack)
        assert "failing" in text and "Dagster UI" in text
        assert all(len(line) <= 80 for line in text.splitlines()), text
        wait_for(
            "status lists the failing check",
            lambda: (
                f"{ORDERS_BRONZE}:freshness"
                in {f["check"] for f in json.loads(_status(stack, "--json"))["failing_checks"]}
            ),
            timeout_s=120,
            every_s=10,
        )
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    resumed = time.time()
    wait_for(
        "the bronze freshness check passes again",
        lambda: (row := _rows(stack, resumed).get(ORDERS_BRONZE)) is not None and row.passed,
        timeout_s=240,
        every_s=5,
    )

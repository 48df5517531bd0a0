"""A seeded mix of shop transactions: new customers, products and orders, order status changes
(several per order), price changes, and deletes of orders created in the same run.

Each committed insert or update is recorded as a `CommittedChange` with the wall time right after
COMMIT returned, so the demo can measure how long the lake took to show it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pymysql

STATUSES = ("new", "paid", "shipped", "delivered", "cancelled")


@dataclass(frozen=True)
class CommittedChange:
    table: str  # <db>.<table>
    key: int
    updated_at: datetime  # the row's updated_at, naive UTC, microseconds
    committed_at: float  # epoch seconds right after COMMIT


@dataclass
class WorkloadCounts:
    transactions: int = 0
    inserts: int = 0
    updates: int = 0
    deletes: int = 0


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ShopWorkload:
    def __init__(self, connection: pymysql.Connection, database: str = "shop", seed: int = 7):
        self.conn = connection
        self.db = database
        self.rng = random.Random(seed)
        self.changes: list[CommittedChange] = []
        self.counts = WorkloadCounts()
        self._customers: list[int] = []
        self._products: dict[int, Decimal] = {}
        self._orders: list[int] = []

    def seed_catalogue(self, customers: int = 20, products: int = 10, orders: int = 3) -> None:
        """Rows in every table, so every table's topic exists before the timed workload."""
        for _ in range(customers):
            self._transaction(self._new_customer)
        for _ in range(products):
            self._transaction(self._new_product)
        for _ in range(orders):
            self._transaction(self._new_order)

    def step(self) -> None:
        """One random transaction."""
        roll = self.rng.random()
        if roll < 0.08 or not self._customers:
            action = self._new_customer
        elif roll < 0.12 or not self._products:
            action = self._new_product
        elif roll < 0.45 or not self._orders:
            action = self._new_order
        elif roll < 0.75:
            action = self._advance_order
        elif roll < 0.85:
            action = self._reprice_product
        else:
            action = self._delete_order
        self._transaction(action)

    def run(self, duration_s: float, rate_per_s: float, tick: Callable[[float], None]) -> None:
        """Run steps at about `rate_per_s` for `duration_s`; `tick(elapsed_s)` after each one."""
        start = time.monotonic()
        interval = 1.0 / rate_per_s
        next_at = start
        while (elapsed := time.monotonic() - start) < duration_s:
            self.step()
            tick(elapsed)
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        tick(duration_s)

    def _transaction(self, action: Callable[[pymysql.cursors.Cursor], list[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.execute("BEGIN")
            touched = action(cur)
            self.conn.commit()
        committed_at = time.time()
        self.counts.transactions += 1
        self.record_committed(touched, committed_at)

    def record_committed(self, touched: list[Any], committed_at: float) -> None:
        """Keep the rows one transaction touched (what its action returned), committed at
        `committed_at`. A workload that records more of each row overrides this."""
        self.changes.extend(
            CommittedChange(f"{self.db}.{table}", key, updated_at, committed_at)
            for table, key, updated_at in touched
        )

    def _new_customer(self, cur) -> list[tuple[str, int, datetime]]:
        now = _now()
        number = self.rng.randrange(1_000_000)
        cur.execute(
            "INSERT INTO customers (name, email, created_at, updated_at) VALUES (%s, %s, %s, %s)",
            (f"Customer {number}", f"c{number}@example.com", now, now),
        )
        self._customers.append(cur.lastrowid)
        self.counts.inserts += 1
        return [("customers", cur.lastrowid, now)]

    def _new_product(self, cur) -> list[tuple[str, int, datetime]]:
        now = _now()
        price = Decimal(self.rng.randrange(100, 20000)) / 100
        sku = f"SKU-{self.rng.randrange(10**6):06d}"
        cur.execute(
            "INSERT INTO products (sku, name, price, updated_at) VALUES (%s, %s, %s, %s)",
            (sku, f"Product {sku}", price, now),
        )
        self._products[cur.lastrowid] = price
        self.counts.inserts += 1
        return [("products", cur.lastrowid, now)]

    def _new_order(self, cur) -> list[tuple[str, int, datetime]]:
        now = _now()
        cur.execute(
            "INSERT INTO orders (customer_id, status, created_at, updated_at) VALUES (%s, 'new', %s, %s)",
            (self.rng.choice(self._customers), now, now),
        )
        order_id = cur.lastrowid
        self._orders.append(order_id)
        touched = [("orders", order_id, now)]
        for _ in range(self.rng.randint(1, 3)):
            product_id = self.rng.choice(list(self._products))
            cur.execute(
                "INSERT INTO order_items (order_id, product_id, quantity, unit_price, updated_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (order_id, product_id, self.rng.randint(1, 5), self._products[product_id], now),
            )
            touched.append(("order_items", cur.lastrowid, now))
        self.counts.inserts += len(touched)
        return touched

    def _advance_order(self, cur) -> list[tuple[str, int, datetime]]:
        now = _now()
        order_id = self.rng.choice(self._orders)
        cur.execute(
            "UPDATE orders SET status = %s, updated_at = %s WHERE id = %s",
            (self.rng.choice(STATUSES[1:]), now, order_id),
        )
        self.counts.updates += 1
        return [("orders", order_id, now)]

    def _reprice_product(self, cur) -> list[tuple[str, int, datetime]]:
        now = _now()
        product_id = self.rng.choice(list(self._products))
        price = Decimal(self.rng.randrange(100, 20000)) / 100
        cur.execute(
            "UPDATE products SET price = %s, updated_at = %s WHERE id = %s",
            (price, now, product_id),
        )
        self._products[product_id] = price
        self.counts.updates += 1
        return [("products", product_id, now)]

    def _delete_order(self, cur) -> list[tuple[str, int, datetime]]:
        order_id = self._orders.pop(self.rng.randrange(len(self._orders)))
        items = cur.execute("DELETE FROM order_items WHERE order_id = %s", (order_id,))
        cur.execute("DELETE FROM orders WHERE id = %s", (order_id,))
        self.counts.deletes += 1 + items
        return []

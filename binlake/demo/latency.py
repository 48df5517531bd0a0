"""How long committed changes took to reach bronze and gold.

Commit-to-bronze: each workload change is found in bronze by (table, key, updated_at); the
manifest's `written_at` of the file holding it, minus the change's commit time.
Commit-to-gold: for each change to `shop.orders`, the first materialization of the gold partition
of the order's creation hour recorded after the commit whose `orders_max_updated_at` has reached
the change's `updated_at`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import polars as pl
import pyarrow.parquet as pq
from dagster import DagsterInstance

from binlake.bronze.layout import OP
from binlake.bronze.manifest import Manifest
from binlake.demo.workload import CommittedChange
from binlake.settings import Settings
from binlake.storage import LakeStorage
from dagster_defs.keys import GOLD_ORDERS_BY_HOUR_STATUS, ORDERS_TABLE
from dagster_defs.read import read_layer_table


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank value below which `fraction` of `values` lie (None if empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def p95(values: list[float]) -> float | None:
    return percentile(values, 0.95)


def commit_to_bronze_delays(settings: Settings, changes: Iterable[CommittedChange]) -> list[float]:
    changes = list(changes)
    tables = {change.table for change in changes}
    storage = LakeStorage.from_settings(settings)
    written: dict[tuple[str, int, datetime], float] = {}
    for entry in Manifest(storage).entries():
        if entry.table not in tables or not entry.is_file:
            continue
        path = storage.full_path(entry.path)
        columns = pq.read_schema(path, filesystem=storage.filesystem).names
        if not {"id", "updated_at"} <= set(columns):
            continue  # a file of tombstones only: key columns, no changes to time
        arrow = pq.read_table(path, columns=["id", "updated_at", OP], filesystem=storage.filesystem)
        frame = pl.from_arrow(arrow)
        for key, updated_at, op in frame.iter_rows():
            if op in ("c", "u", "r") and updated_at is not None:
                marker = (entry.table, key, updated_at)
                written[marker] = min(written.get(marker, entry.written_at), entry.written_at)
    return [
        written[(c.table, c.key, c.updated_at)] - c.committed_at
        for c in changes
        if (c.table, c.key, c.updated_at) in written
    ]


def commit_to_gold_delays(settings: Settings, changes: Iterable[CommittedChange]) -> list[float]:
    # Gold is partitioned by the hour an order was created: a change counts as in gold once
    # the partition of its order's hour was materialized with it.
    orders = read_layer_table(settings, ["silver", *ORDERS_TABLE.split(".")])
    hour_of_order = {
        key: created.strftime("%Y-%m-%d-%H:00")
        for key, created in orders.select("id", "created_at").iter_rows()
    }
    home = settings.state_dir.resolve() / "dagster"
    with DagsterInstance.from_config(str(home)) as instance:
        records, cursor, has_more = [], None, True
        while has_more:  # the instance returns at most 10,000 records per call
            page = instance.fetch_materializations(
                GOLD_ORDERS_BY_HOUR_STATUS, limit=10_000, cursor=cursor
            )
            records.extend(page.records)
            cursor, has_more = page.cursor, page.has_more
        materializations = sorted(
            (
                record.timestamp,
                record.partition_key,
                _as_datetime(record.asset_materialization.metadata["orders_max_updated_at"].value),
            )
            for record in records
            if record.asset_materialization
            and "orders_max_updated_at" in record.asset_materialization.metadata
        )
    delays = []
    for change in changes:
        if not change.table.endswith(".orders") or change.key not in hour_of_order:
            continue  # a deleted order has no hour left to look in
        for materialized_at, partition, max_updated_at in materializations:
            if (
                partition == hour_of_order[change.key]
                and materialized_at >= change.committed_at
                and max_updated_at
                and max_updated_at >= change.updated_at
            ):
                delays.append(materialized_at - change.committed_at)
                break
    return delays


def _as_datetime(value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value)) if str(value) else None

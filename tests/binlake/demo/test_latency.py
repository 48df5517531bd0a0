"""Commit-to-bronze delays, measured on real bronze files and a real manifest."""

from datetime import datetime

import pyarrow as pa

from binlake.demo.latency import _as_datetime, commit_to_bronze_delays, p95
from binlake.demo.workload import CommittedChange
from binlake.settings import load_settings
from binlake.storage import LakeStorage
from tests.support.manifest import write_with_entry

T = datetime(2026, 11, 21, 8, 0, 0, 123456)


def _write(
    storage: LakeStorage, name: str, table: pa.Table, written_at: float, lake_table="shop.orders"
):
    write_with_entry(
        storage,
        table,
        name=name,
        lake_table=lake_table,
        partition_key="2026-11-21-08:00",
        written_at=written_at,
    )


def test_delay_is_file_durable_time_minus_commit_time(tmp_path) -> None:
    settings = load_settings(state_dir=tmp_path)
    storage = LakeStorage.from_url(settings.lake_url)
    _write(
        storage,
        "a",
        pa.table({"_op": ["c", "u"], "id": [1, 1], "updated_at": [T, T.replace(second=5)]}),
        written_at=101.5,
    )
    # a file of only a tombstone (key column only) must not break the measurement
    _write(storage, "b", pa.table({"_op": ["t"], "id": [1]}), written_at=102.0)
    _write(
        storage,
        "c",
        pa.table({"_op": ["c"], "id": [9], "updated_at": [T]}),
        written_at=200.0,
        lake_table="other.table",
    )
    changes = [
        CommittedChange("shop.orders", 1, T, committed_at=100.0),
        CommittedChange("shop.orders", 1, T.replace(second=5), committed_at=101.0),
        CommittedChange("shop.orders", 2, T, committed_at=100.0),  # never reached bronze
    ]
    assert commit_to_bronze_delays(settings, changes) == [1.5, 0.5]


def test_p95_and_empty_metadata() -> None:
    assert p95([]) is None
    assert p95([float(i) for i in range(1, 101)]) == 95.0
    assert _as_datetime("") is None
    assert _as_datetime("2026-11-21T08:00:00.123456") == T

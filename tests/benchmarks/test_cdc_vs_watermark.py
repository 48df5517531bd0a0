"""The pure parts of benchmarks/cdc_vs_watermark.py: scoring and reading bronze."""

import importlib.util
import sys
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from binlake.settings import load_settings
from binlake.storage import LakeStorage
from tests.support.manifest import write_with_entry

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "cdc_vs_watermark.py"
_spec = importlib.util.spec_from_file_location("cdc_vs_watermark", SCRIPT)
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up while the class is built
_spec.loader.exec_module(bench)

T1 = datetime(2026, 1, 2, 3, 4, 5, 1)
T2 = datetime(2026, 1, 2, 3, 4, 6, 2)
T3 = datetime(2026, 1, 2, 3, 4, 7, 3)
ORDERS = "shop.orders"


def _changes():
    return [
        bench.Change(ORDERS, 1, "c", T1, 100.0),
        bench.Change(ORDERS, 1, "u", T2, 101.0),  # superseded by the next update
        bench.Change(ORDERS, 1, "u", T3, 102.0),
        bench.Change(ORDERS, 2, "c", T1, 100.0),
        bench.Change(ORDERS, 2, "d", None, 103.0),
    ]


def test_superseded_marks_changes_followed_by_a_change_to_the_same_row() -> None:
    assert bench.superseded(_changes()) == {0, 1, 3}


def test_watermark_like_capture_misses_intermediate_versions_and_deletes() -> None:
    # Runs ended at 110 (saw order 1 at T1 and order 2) and 120 (saw order 1 at T3).
    versions = {(ORDERS, 1, T1): 110.0, (ORDERS, 2, T1): 110.0, (ORDERS, 1, T3): 120.0}
    figures = bench.score(_changes(), versions, {})
    assert figures["deletes_captured"] == 0 and figures["deletes_total"] == 1
    assert figures["updates_captured"] == 1 and figures["updates_total"] == 2
    assert figures["superseded_updates_captured"] == 0
    assert figures["superseded_updates_total"] == 1
    assert figures["inserts_captured"] == 2 and figures["inserts_total"] == 2
    assert figures["max_staleness_s"] == 18.0  # the T3 update: committed 102, held at 120
    assert figures["changes_not_captured"] == 2


def test_cdc_like_capture_holds_every_version_and_the_delete() -> None:
    versions = {
        (ORDERS, 1, T1): 100.5,
        (ORDERS, 1, T2): 101.5,
        (ORDERS, 1, T3): 102.5,
        (ORDERS, 2, T1): 100.5,
    }
    figures = bench.score(_changes(), versions, {(ORDERS, 2): 104.0})
    assert figures["deletes_captured"] == 1
    assert figures["updates_captured"] == 2
    assert figures["superseded_updates_captured"] == 1
    assert figures["max_staleness_s"] == 1.0
    assert figures["changes_not_captured"] == 0


def test_score_of_nothing() -> None:
    figures = bench.score([], {}, {})
    assert figures["max_staleness_s"] is None and figures["updates_total"] == 0


def test_soft_deleted_rows_needs_a_set_marker() -> None:
    rows = [
        (ORDERS, 1, {"deleted_at": None}, 10.0),
        (ORDERS, 2, {"deleted_at": T1}, 11.0),
        (ORDERS, 2, {"deleted_at": T1}, 12.0),
    ]
    assert bench.soft_deleted_rows(rows, ["deleted_at"]) == {(ORDERS, 2): 11.0}
    assert bench.soft_deleted_rows(rows, []) == {}


def _write(storage: LakeStorage, name: str, table: pa.Table, written_at: float) -> None:
    hour = "2026-01-02-03:00"
    write_with_entry(
        storage, table, name=name, lake_table=ORDERS, partition_key=hour, written_at=written_at
    )


def test_bronze_index_reads_new_manifest_entries_only(tmp_path) -> None:
    settings = load_settings(state_dir=tmp_path)
    storage = LakeStorage.from_url(settings.lake_url)
    index = bench.BronzeIndex(settings, [ORDERS])
    _write(
        storage,
        "a",
        pa.table({"_op": ["c", "u", "r"], "id": [1, 1, 3], "updated_at": [T1, T2, T1]}),
        written_at=100.5,
    )
    index.refresh()
    _write(storage, "b", pa.table({"_op": ["d"], "id": [1], "updated_at": [T2]}), written_at=103.0)
    _write(storage, "c", pa.table({"_op": ["t"], "id": [1]}), written_at=103.5)
    _write(storage, "d", pa.table({"_op": ["u"], "id": [1], "updated_at": [T2]}), written_at=109.0)
    index.refresh()
    assert index.versions == {
        (ORDERS, 1, T1): 100.5,
        (ORDERS, 1, T2): 100.5,
        (ORDERS, 3, T1): 100.5,
    }
    assert index.deletes == {(ORDERS, 1): 103.0}
    assert index.rows_by_op == {"c": 1, "u": 2, "r": 1, "d": 1, "t": 1}
    assert (
        index.missing(
            [bench.Change(ORDERS, 1, "d", None, 0.0), bench.Change(ORDERS, 2, "c", T1, 0.0)]
        )
        == 1
    )

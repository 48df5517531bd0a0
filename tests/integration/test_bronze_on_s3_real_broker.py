"""Bronze on a real S3 server (the session's SeaweedFS) through the real broker: the worker
(`python -m binlake worker`) fills it, the compactor compacts it, `binlake replay` re-reads it,
and silver rebuilt from it equals silver rebuilt from a copy of it on local disk.

No local lake directory exists at any point: the worker, the compactor and the replay reach the
lake only through BINLAKE_STORAGE_URL=s3://... and the server's endpoint and keys.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from binlake.bronze.layout import BRONZE_DIR
from binlake.bronze.manifest import Manifest, live_entries
from binlake.bronze.reader import BronzeReader
from binlake.settings import load_settings
from binlake.silver.pii import PiiPolicy
from binlake.silver.rebuild import AsOf, rebuild_silver
from binlake.silver.tables import SilverTables
from binlake.storage import LakeStorage
from compactor.run import run_compaction
from tests.support.processes import run_python_module

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

PARTITIONS = 2
ROWS = 300
ORDERS = "shop.orders"


def copy_bronze(lake: LakeStorage, to: Path) -> LakeStorage:
    """Every bronze object of `lake` (data files and manifest) copied to the directory `to`;
    the copy opened as a local lake."""
    (to / BRONZE_DIR).mkdir(parents=True)
    pafs.copy_files(
        lake.full_path(BRONZE_DIR), str(to / BRONZE_DIR), source_filesystem=lake.filesystem
    )
    return LakeStorage.from_url(str(to))


def test_worker_compactor_replay_and_silver_on_s3(
    tmp_path, kafka, processes, bronze_kit, s3_lake, monkeypatch
) -> None:
    kit = bronze_kit
    orders = kafka.table()
    topic = orders.topic
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(10)
    producer = kit.ChangeProducer(kafka.bootstrap, orders, PARTITIONS)
    for row in range(ROWS):  # 600 s of commits: rows cross an hour boundary when it falls there
        producer.produce_row(row)
    assert producer.producer.flush(30) == 0
    counts = producer.offsets_per_partition()
    env = kit.worker_env(
        kafka,
        s3_lake.storage_url,
        tmp_path / "state",
        **s3_lake.env(),
        BINLAKE_BRONZE__FLUSH_ROWS="15",
        BINLAKE_BRONZE__FLUSH_SECONDS="5",
    )
    lake = LakeStorage.from_url(s3_lake.storage_url, s3_lake.storage_options)
    began = time.monotonic()
    kit.run_worker_until_committed(
        processes, env, admin, topic, PARTITIONS, kafka.group, counts, tmp_path / "worker-fill.log"
    )
    filled = kit.assert_exactly_once(lake, topic, producer.delivered)
    print(
        f"\nworker: {filled.rows} records in {filled.files} files ({time.monotonic() - began:.1f}s)"
    )
    assert filled.files >= 2 * PARTITIONS

    for name, value in env.items():
        if name.startswith(("BINLAKE_", "AWS_")):
            monkeypatch.setenv(name, value)
    settings = load_settings()
    assert LakeStorage.from_settings(settings).url == s3_lake.storage_url
    # Hours are closed once their newest file is `grace_minutes` old: compact as of tomorrow.
    report = run_compaction(settings, now=datetime.now(UTC) + timedelta(days=1))
    summary = report.summary()
    print(f"compactor: {summary}")
    assert not summary["failed"]
    assert summary["groups_compacted"] >= PARTITIONS
    compacted = kit.assert_exactly_once(lake, topic, producer.delivered)
    assert compacted.files < filled.files
    assert any(e.supersedes for e in live_entries(Manifest(lake).entries()))

    # A replay of everything: the worker reads every offset again and writes nothing twice.
    manifest_before = Manifest(lake).read_since(0)
    reset = run_python_module(
        "binlake", "replay", "--table", ORDERS, "--from-offset", "0:0,1:0", env=env, timeout=120
    )
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert kit.committed_offsets(admin, topic, PARTITIONS, kafka.group) == {0: 0, 1: 0}
    kit.run_worker_until_committed(
        processes,
        env,
        admin,
        topic,
        PARTITIONS,
        kafka.group,
        counts,
        tmp_path / "worker-replay.log",
    )
    replayed = kit.assert_exactly_once(lake, topic, producer.delivered)
    assert replayed.files == compacted.files
    assert Manifest(lake).read_since(0) == manifest_before

    # Silver rebuilt from bronze on S3 (into S3) equals silver rebuilt from a local copy of it.
    as_of = AsOf(offsets={p: n - 1 for p, n in counts.items()})
    pii = PiiPolicy.from_settings(settings.silver)
    local = copy_bronze(lake, tmp_path / "copy")
    on_s3 = rebuild_silver(BronzeReader(lake), SilverTables.of(lake), pii, ORDERS, as_of)
    on_disk = rebuild_silver(BronzeReader(local), SilverTables.of(local), pii, ORDERS, as_of)
    assert on_s3.table.uri.startswith(s3_lake.storage_url)
    silver = on_s3.table.read_current().sort("id")
    assert silver.equals(on_disk.table.read_current().sort("id"))
    assert (on_s3.rows, on_s3.changes_read) == (on_disk.rows, on_disk.changes_read)
    assert on_s3.changes_read == sum(counts.values())  # every bronze row, tombstones too
    assert on_s3.rows == ROWS - ROWS // 10  # every 10th row deleted
    assert sorted(silver["id"].to_list()) == [i for i in range(ROWS) if i % 10]
    assert not (tmp_path / "lake").exists()

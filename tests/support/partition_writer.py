"""The per-partition bronze writer's test kit: change events of one small table, a fake clock,
a lake whose writes and manifest appends fail on demand (fixtures `storage`, `manifest`,
`clock`), and a writer over them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from binlake.bronze.manifest import Manifest, ManifestEntry
from binlake.errors import StorageUnavailableError
from binlake.storage import LakeStorage
from cdc.envelope import ChangeEvent, SourcePosition
from streams.flush_policy import FlushPolicy
from streams.partition_writer import PartitionWriter

TOPIC = "binlake.shop.orders"
TABLE = "shop.orders"
HOUR_MS = 3_600_000
T10 = 1_795_255_200_000  # 2026-11-21 10:00:00 UTC
ROW_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("qty", pa.int32()),
    ]
)
KEY_SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False)])
WIDER_SCHEMA = ROW_SCHEMA.append(pa.field("note", pa.string()))


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def change(
    op: str = "c",
    id_: int = 1,
    *,
    ts_ms: int = T10,
    schema: pa.Schema = ROW_SCHEMA,
    pos: int = 100,
    table: str = TABLE,
    **values: Any,
) -> ChangeEvent:
    row = {"id": id_, "name": f"n{id_}", "qty": id_ * 2}
    row.update(values)
    row = {k: v for k, v in row.items() if k in schema.names}
    db, _, name = table.partition(".")
    return ChangeEvent(
        table=table,
        op=op,
        row=row,
        row_schema=schema,
        primary_key=("id",),
        source=SourcePosition(
            file="mariadb-bin.000003",
            pos=pos,
            row=0,
            ts_ms=ts_ms,
            snapshot="false",
            db=db,
            table=name,
            server_id=1,
            gtid=None,
        ),
        captured_ts_ms=ts_ms + 20,
    )


def tombstone(id_: int) -> ChangeEvent:
    return ChangeEvent(
        table=TABLE,
        op="x",
        row={"id": id_},
        row_schema=KEY_SCHEMA,
        primary_key=("id",),
        source=None,
        captured_ts_ms=None,
    )


class FlakyManifest(Manifest):
    """A manifest whose commits fail (after their plan ran: the files are written) while
    `failing` is set."""

    def __init__(self, storage: LakeStorage):
        super().__init__(storage)
        self.failing = False
        self.calls = 0

    def _publish(self, seq: int, data: bytes) -> bool:
        self.calls += 1
        if self.failing:
            raise StorageUnavailableError("manifest volume is away")
        return super()._publish(seq, data)


class FlakyStorage(LakeStorage):
    """Local storage whose write_atomic fails while `failing` is set; records writes."""

    failing: bool
    writes: list[str]

    def write_atomic(self, relative: str, data: bytes) -> None:
        self.writes.append(relative)
        if self.failing:
            raise StorageUnavailableError(f"cannot write {relative}")
        super().write_atomic(relative, data)


@pytest.fixture
def storage(tmp_path: Path) -> FlakyStorage:
    base = LakeStorage.from_url(str(tmp_path / "lake"))
    store = FlakyStorage(base.filesystem, base.base)
    object.__setattr__(store, "failing", False)
    object.__setattr__(store, "writes", [])
    return store


@pytest.fixture
def manifest(storage: FlakyStorage) -> FlakyManifest:
    return FlakyManifest(storage)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_writer(
    storage: LakeStorage,
    manifest: Manifest,
    clock: FakeClock,
    *,
    flush_rows: int = 100,
    flush_seconds: float = 10.0,
    flush_bytes: int = 10**9,
    resume_after: int = -1,
    partition: int = 0,
    wall_clock: Any = None,
) -> PartitionWriter:
    return PartitionWriter(
        TOPIC,
        partition,
        storage=storage,
        manifest=manifest,
        flush_policy=FlushPolicy(rows=flush_rows, seconds=flush_seconds, bytes=flush_bytes),
        resume_after=resume_after,
        clock=clock,
        wall_clock=wall_clock or (lambda: 1_234_567_890.5),
    )


def read_back(storage: LakeStorage, entry: ManifestEntry) -> pa.Table:
    return pq.read_table(storage.full_path(entry.path))

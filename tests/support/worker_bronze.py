"""Bronze files of one table written the way the bronze worker writes them: change events through
a real `PartitionWriter` (the worker's Parquet encoding, file names and manifest entries), one
offset per row, each row committed a millisecond after the one before."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from binlake.bronze.manifest import Manifest
from binlake.settings import Settings
from binlake.storage import LakeStorage
from cdc.envelope import ChangeEvent, SourcePosition
from streams.flush_policy import FlushPolicy
from streams.partition_writer import PartitionWriter, RotationReason


class WorkerBronze:
    def __init__(self, settings: Settings, table: str):
        self.table = table
        storage = LakeStorage.from_url(settings.lake_url)
        self.writer = self._writer(settings.topic_for(table), storage, Manifest(storage), -1)
        self.offset = 0

    @staticmethod
    def _writer(
        topic: str, storage: LakeStorage, manifest: Manifest, resume_after: int
    ) -> PartitionWriter:
        # Rotated only by the test (close, flush): no row count or age is reached.
        return PartitionWriter(
            topic,
            0,
            storage=storage,
            manifest=manifest,
            flush_policy=FlushPolicy(rows=10_000, seconds=3600.0),
            clock=lambda: 0.0,
            resume_after=resume_after,
        )

    def rows(
        self,
        schema: pa.Schema,
        *rows: dict[str, Any],
        op: str = "c",
        primary_key: tuple[str, ...] = ("id",),
    ) -> WorkerBronze:
        """Buffers a change `op` of each row (in `schema`) at the next offsets."""
        db, name = self.table.split(".")
        for row in rows:
            event = ChangeEvent(
                table=self.table,
                op=op,
                row=dict(row),
                row_schema=schema,
                primary_key=primary_key,
                source=SourcePosition(
                    "mariadb-bin.000001",
                    1000 + self.offset,
                    0,
                    1_717_236_000_000 + self.offset,
                    "false",
                    db,
                    name,
                    1,
                    None,
                ),
                captured_ts_ms=None,
            )
            self.writer.add(self.offset, event)
            self.offset += 1
        return self

    def close(self) -> None:
        """Writes what is buffered, as a worker shutting down does."""
        self.writer.close(RotationReason.SHUTDOWN)

    def flush(self) -> None:
        """Writes what is buffered and goes on in a new file, as a restarted worker does."""
        self.close()
        self.writer = self._writer(
            self.writer.topic, self.writer.storage, self.writer.manifest, self.offset - 1
        )

"""When a bronze writer closes its open file: after so many rows, record bytes or seconds.

Like the Kafka Connect S3 sink's `flush.size` and `rotate.interval.ms`, one value object built
from `BronzeSettings` once and handed to the worker, which hands it to every partition writer.
The other rotation reasons (hour boundary, schema change, revocation, shutdown) do not depend on
configuration; see `streams.partition_writer.RotationReason`.
"""

from __future__ import annotations

from dataclasses import dataclass

from binlake.settings import BronzeSettings

DEFAULT_FLUSH_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class FlushPolicy:
    """Rotate a file after `rows` rows, about `bytes` record bytes, or `seconds` after its first
    row was buffered, whichever comes first."""

    rows: int
    seconds: float
    bytes: int = DEFAULT_FLUSH_BYTES

    def __post_init__(self) -> None:
        if self.rows < 1 or self.seconds <= 0 or self.bytes < 1:
            raise ValueError("flush_rows, flush_seconds and flush_bytes must be positive")

    @classmethod
    def from_settings(cls, bronze: BronzeSettings) -> FlushPolicy:
        return cls(rows=bronze.flush_rows, seconds=bronze.flush_seconds, bytes=bronze.flush_bytes)

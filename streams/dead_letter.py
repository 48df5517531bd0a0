"""Records that cannot become bronze rows, kept byte for byte so nothing is silently lost.

Each one is a small JSON file `bronze/_dead_letter/<topic>+<partition>+<offset>.json` holding
the record's original key and value (base64), where it came from, why it was rejected and when.
The name depends only on the record's position, so handling the same record again (after a
restart) rewrites the same file instead of adding another. Files are written atomically.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from binlake.bronze_layout import DEAD_LETTER_DIR, OFFSET_DIGITS
from binlake.storage import LakeStorage


def dead_letter_path(topic: str, partition: int, offset: int) -> str:
    """Path of a dead letter relative to the lake root."""
    if not topic or "/" in topic or topic in (".", ".."):
        raise ValueError(f"topic name {topic!r} cannot be used in a file name")
    return f"{DEAD_LETTER_DIR}/{topic}+{partition}+{offset:0{OFFSET_DIGITS}d}.json"


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


@dataclass
class DeadLetters:
    """Writes dead letters under a lake root."""

    storage: LakeStorage
    wall_clock: Callable[[], float] = time.time

    def write(
        self,
        *,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        reason: str,
        timestamp_ms: int | None = None,
        error: str | None = None,
    ) -> str:
        """Durably record one rejected record; returns its path relative to the lake root."""
        path = dead_letter_path(topic, partition, offset)
        document = {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "timestamp_ms": timestamp_ms,
            "key_b64": _b64(key),
            "value_b64": _b64(value),
            "reason": reason,
            "error": error,
            "dead_lettered_at": self.wall_clock(),
        }
        self.storage.write_atomic(path, json.dumps(document, sort_keys=True).encode())
        return path

"""A fresh broker means a fresh lake.

Tansu keeps topics in memory, so every `binlake up` of a stopped stack starts with empty topics,
offsets from 0 and no Kafka Connect offsets: Debezium takes a new snapshot. Bronze names files
and resumes by Kafka offset, so a lake written against the previous broker must not be continued
(its offsets would make the worker skip the new records as already written). The previous lake,
with the Dagster instance that tracked it and the Faust worker's local data, is moved aside.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from binlake.bronze_layout import MANIFEST_PATH
from binlake.errors import ConfigurationError
from binlake.settings import Settings
from binlake.storage import LakeStorage

ARCHIVE_DIR = "archive"


def start_new_lake_epoch(settings: Settings, now: datetime | None = None) -> Path | None:
    """Move the previous lake aside if it has a manifest; returns where it went, or None."""
    storage = LakeStorage.from_url(settings.lake_url)
    if not storage.exists(MANIFEST_PATH):
        return None
    state_dir = settings.state_dir.resolve()
    lake = Path(storage.base)
    if not storage.is_local or not lake.is_relative_to(state_dir):
        raise ConfigurationError(
            f"the lake at {settings.lake_url} was written against a previous broker, and the local"
            " broker starts empty; move that lake away or set BINLAKE_STORAGE_URL to a new place"
        )
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    target = state_dir / ARCHIVE_DIR / stamp
    target.mkdir(parents=True)
    for path in (lake, state_dir / "dagster", state_dir / "faust"):
        if path.exists():
            shutil.move(str(path), str(target / path.name))
    return target

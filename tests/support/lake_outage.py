"""A lake whose bronze directory is away for a while, as a full or unmounted volume looks to the
bronze writer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def bronze_replaced_by_a_file(lake_dir: Path) -> Iterator[Path]:
    """Make `<lake>/bronze` unusable (a regular file) for the duration; yields the real dir."""
    bronze, away = lake_dir / "bronze", lake_dir / "bronze.away"
    bronze.rename(away)
    bronze.write_bytes(b"not a directory\n")
    try:
        yield away
    finally:
        bronze.unlink()
        away.rename(bronze)

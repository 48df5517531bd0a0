from datetime import UTC, datetime

import pytest

from binlake.errors import ConfigurationError
from binlake.local_stack.lake_epoch import start_new_lake_epoch
from binlake.manifest import Manifest, ManifestEntry
from binlake.settings import load_settings
from binlake.storage import LakeStorage

NOW = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)


def _lake_with_one_file(url: str) -> None:
    Manifest(LakeStorage.from_url(url)).append(
        ManifestEntry("shop.orders", "binlake.shop.orders", 0, 0, 9, 10, "bronze/x.parquet",
                      "2026-11-21-08:00", 1, 1.0, "rows")
    )


def test_an_empty_lake_is_kept(tmp_path) -> None:
    assert start_new_lake_epoch(load_settings(state_dir=tmp_path), NOW) is None


def test_a_lake_of_the_previous_broker_is_archived_with_dagster_state(tmp_path) -> None:
    settings = load_settings(state_dir=tmp_path)
    _lake_with_one_file(settings.lake_url)
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "history.db").write_text("x")
    archived = start_new_lake_epoch(settings, NOW)
    assert archived == tmp_path / "archive" / "20261121T093000Z"
    assert (archived / "lake" / "bronze" / "_manifest" / "manifest.jsonl").exists()
    assert (archived / "dagster" / "history.db").exists()
    assert not (tmp_path / "lake").exists() and not (tmp_path / "dagster").exists()


def test_a_lake_outside_the_state_dir_is_never_moved(tmp_path) -> None:
    elsewhere = tmp_path / "shared-lake"
    settings = load_settings(state_dir=tmp_path / "state", storage_url=str(elsewhere))
    _lake_with_one_file(settings.lake_url)
    with pytest.raises(ConfigurationError, match="previous broker"):
        start_new_lake_epoch(settings, NOW)
    assert (elsewhere / "bronze" / "_manifest" / "manifest.jsonl").exists()

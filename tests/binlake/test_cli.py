"""`binlake rebuild` and `binlake compact` on a real lake in tmp_path (settings from the env)."""

import json

from typer.testing import CliRunner

from binlake.bronze.manifest import Manifest
from binlake.cli import app
from binlake.silver.delta_table import SilverDeltaTable
from binlake.storage import LakeStorage

MINUTE_MS = 60_000
runner = CliRunner()


def write_history(bronze) -> int:
    """Order 1 created, then paid a minute later, in two files."""
    c, t0 = bronze.change, bronze.base_ts_ms
    bronze.write("shop.orders", [c("c", 0, ts_ms=t0, id=1, status="new")])
    bronze.write("shop.orders", [c("u", 1, ts_ms=t0 + MINUTE_MS, id=1, status="paid")])
    return t0


def test_rebuild_prints_where_it_wrote_the_table_as_of_then(settings, bronze):
    write_history(bronze)
    result = runner.invoke(
        app, ["rebuild", "--table", "shop.orders", "--as-of", "2024-06-01T10:00:30Z", "--json"]
    )
    assert result.exit_code == 0, result.output
    rebuilt = json.loads(result.stdout)
    assert (rebuilt["rows"], rebuilt["changes_read"]) == (1, 1)
    frame = SilverDeltaTable(rebuilt["uri"]).read_current()
    assert frame.select("id", "status").rows() == [(1, "new")]


def test_rebuild_names_what_is_wrong(settings, bronze):
    write_history(bronze)
    unknown = runner.invoke(app, ["rebuild", "--table", "shop.nope", "--as-of", "0"])
    assert unknown.exit_code == 2 and "unknown table 'shop.nope'" in unknown.output
    bad = runner.invoke(app, ["rebuild", "--table", "shop.orders", "--as-of", "yesterday"])
    assert bad.exit_code == 1 and "neither a time" in bad.output
    first = runner.invoke(app, ["rebuild", "--table", "shop.orders", "--as-of", "0:1"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["rebuild", "--table", "shop.orders", "--as-of", "0:1"])
    assert again.exit_code == 1 and "already exists" in again.output


def test_compact_dry_run_changes_nothing_then_compacts(settings, bronze):
    write_history(bronze)
    manifest = Manifest(LakeStorage.from_url(settings.lake_url))
    before = manifest.entries()

    dry = runner.invoke(app, ["compact", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "1 group(s)" in dry.output and "2 files" in dry.output
    assert manifest.entries() == before

    done = runner.invoke(app, ["compact"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["files_replaced"] == 2
    [entry] = manifest.entries_for("shop.orders")
    assert entry.rotation_reason == "compaction" and entry.rows == 2


def test_compact_dry_run_lists_the_files_retention_would_expire(
    settings,
    bronze,
    monkeypatch,
):
    write_history(bronze)
    monkeypatch.setenv("BINLAKE_COMPACTOR__BRONZE_RETENTION_DAYS", "1")
    manifest = Manifest(LakeStorage.from_url(settings.lake_url))
    before = manifest.entries()

    dry = runner.invoke(app, ["compact", "--dry-run"])

    assert dry.exit_code == 0, dry.output
    assert "2 file(s) to expire" in dry.output
    assert all(f"would expire {entry.path}" in dry.output for entry in before)
    assert manifest.entries() == before


def test_invalid_settings_are_named_without_echoing_a_secret(settings, monkeypatch):
    monkeypatch.setenv("BINLAKE_STORAGE_URL", "s3://AKIAEXAMPLE:wJalrXUtnFEMI@lake/prefix")
    result = runner.invoke(
        app, ["rebuild", "--table", "shop.orders", "--as-of", "2024-06-01T10:00:00Z"]
    )
    assert result.exit_code == 2
    assert "storage_url" in result.output and "must not carry credentials" in result.output
    assert "wJalrXUtnFEMI" not in result.output


def test_rebuild_output_never_shows_the_storage_secrets(settings, bronze, monkeypatch):
    write_history(bronze)
    monkeypatch.setenv("BINLAKE_STORAGE__SECRET_ACCESS_KEY", "wJalrXUtnFEMI")
    monkeypatch.setenv("BINLAKE_STORAGE__ACCESS_KEY_ID", "AKIAEXAMPLE")
    result = runner.invoke(
        app, ["rebuild", "--table", "shop.orders", "--as-of", "2024-06-01T10:00:30Z"]
    )
    assert result.exit_code == 0, result.output
    assert "wJalrXUtnFEMI" not in result.output and "AKIAEXAMPLE" not in result.output


def test_rebuild_counts_live_rows_as_read_silver_does_and_tombstones_apart(settings, bronze):
    """A deleted key stays in the rebuilt table as a tombstone row: the report says how many,
    and its rows are the live ones, the count `binlake.lake` readers get."""
    c, t0 = bronze.change, bronze.base_ts_ms
    bronze.write(
        "shop.orders",
        [
            c("c", 0, ts_ms=t0, id=1, status="new"),
            c("c", 1, ts_ms=t0, id=2, status="new"),
            c("c", 2, ts_ms=t0, id=3, status="new"),
            c("d", 3, ts_ms=t0, id=2, status="new"),
        ],
    )
    result = runner.invoke(app, ["rebuild", "--table", "shop.orders", "--as-of", "0:3"])
    assert result.exit_code == 0, result.output
    assert "2 live rows (+1 deleted keys kept as tombstones) from 4 changes" in result.output
    as_json = runner.invoke(app, ["rebuild", "--table", "shop.orders", "--as-of", "0:2", "--json"])
    rebuilt = json.loads(as_json.stdout)
    assert (rebuilt["rows"], rebuilt["tombstones"], rebuilt["changes_read"]) == (3, 0, 3)
    stored = SilverDeltaTable(rebuilt["uri"])
    assert stored.read_all().height == stored.read_current().height == 3

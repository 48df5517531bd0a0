"""Failpoints: parsed once from BINLAKE_FAILPOINTS, a no-op when unset, a SIGKILL where wired."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from binlake import failpoints
from binlake.failpoints import FailpointSpecError, parse

REPO = Path(__file__).resolve().parents[2]


def test_parse_names_and_probabilities() -> None:
    assert parse("") == {}
    assert parse("  ") == {}
    assert parse("bronze.after_rename=0.05") == {"bronze.after_rename": 0.05}
    assert parse(" bronze.mid_write = 1 , manifest.after_append=0;bronze.before_rename") == {
        "bronze.mid_write": 1.0,
        "manifest.after_append": 0.0,
        "bronze.before_rename": 1.0,
    }
    assert parse("bronze.after_rename=0.1,bronze.after_rename=0.2") == {"bronze.after_rename": 0.2}


@pytest.mark.parametrize(
    "spec",
    [
        "bronze.after_renam=0.5",  # a typo must not silently disable a crash test
        "bronze.after_rename=often",
        "bronze.after_rename=1.5",
        "bronze.after_rename=-0.1",
        "bronze.after_rename=nan",
        "=0.5",
    ],
)
def test_parse_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(FailpointSpecError):
        parse(spec)


def test_a_failpoint_that_is_not_switched_on_does_nothing(monkeypatch) -> None:
    def fail(*args: object) -> None:
        raise AssertionError(f"os.kill{args} called")

    monkeypatch.setattr(failpoints.os, "kill", fail)
    monkeypatch.setattr(failpoints, "_ACTIVE", {})
    for name in failpoints.KNOWN:
        failpoints.failpoint(name)
        assert not failpoints.armed(name)
    # the environment is read once, at import: setting it later changes nothing
    monkeypatch.setenv(failpoints.ENV_VAR, "bronze.after_rename=1")
    failpoints.failpoint("bronze.after_rename")


def test_probability_decides_whether_a_failpoint_fires(monkeypatch) -> None:
    kills: list[tuple[int, int]] = []
    monkeypatch.setattr(failpoints.os, "kill", lambda pid, sig: kills.append((pid, sig)))
    monkeypatch.setattr(
        failpoints, "_ACTIVE", {"bronze.after_rename": 1.0, "bronze.before_rename": 0.0}
    )
    for _ in range(100):
        failpoints.failpoint("bronze.before_rename")
        failpoints.failpoint("bronze.mid_write")  # not switched on
    assert kills == []
    failpoints.failpoint("bronze.after_rename")
    assert kills == [(os.getpid(), signal.SIGKILL)]

    kills.clear()
    monkeypatch.setattr(failpoints, "_ACTIVE", {"bronze.after_rename": 0.5})
    for _ in range(400):
        failpoints.failpoint("bronze.after_rename")
    assert 100 < len(kills) < 300  # binomial(400, 0.5): outside this range p < 1e-20


def _run(code: str, tmp_path: Path, spec: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != failpoints.ENV_VAR}
    if spec is not None:
        env[failpoints.ENV_VAR] = spec
    return subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


WRITE = """
import sys
from binlake.bronze.manifest import Manifest, ManifestEntry
from binlake.storage import LakeStorage
lake = LakeStorage.from_url(sys.argv[1])
lake.write_atomic("bronze/t.x/f.parquet", b"0123456789")
Manifest(lake).append(ManifestEntry(
    table="t.x", topic="p.t.x", partition=0, first_offset=0, last_offset=0, rows=1,
    path="bronze/t.x/f.parquet", partition_key="2026-01-01-00:00", bytes=10, written_at=0.0,
    rotation_reason="rows"))
print("survived")
"""


FIRST_COMMIT = f"bronze/_manifest/log/{0:020d}.json"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_unset_the_process_runs_through_every_failpoint(tmp_path) -> None:
    result = _run(WRITE, tmp_path, None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "survived"
    files = _files(tmp_path)
    assert files["bronze/t.x/f.parquet"] == b"0123456789"
    [entry] = json.loads(files[FIRST_COMMIT])["entries"]
    assert entry["path"] == "bronze/t.x/f.parquet"
    # The file, the commit and the lake's start marker written by the first commit: no more.
    assert json.loads(files["bronze/_lake_start.json"]) == {"first_hour": "2026-01-01-00:00"}
    assert len(files) == 3


@pytest.mark.parametrize("name", failpoints.KILLS)
def test_each_failpoint_kills_the_process_where_it_is_wired(tmp_path, name: str) -> None:
    result = _run(WRITE, tmp_path, f"{name}=1")
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert failpoints.FIRED_MESSAGE.format(name=name, pid="")[:-1].strip() in result.stderr
    assert result.stdout == ""
    files = _files(tmp_path)
    final = files.get("bronze/t.x/f.parquet")
    temps = {path: data for path, data in files.items() if path.endswith(".tmp")}
    manifest = files.get(FIRST_COMMIT)
    if name == "bronze.mid_write":
        assert final is None and list(temps.values()) == [b"01234"] and manifest is None
    elif name == "bronze.before_rename":
        assert final is None and list(temps.values()) == [b"0123456789"] and manifest is None
    elif name == "bronze.after_rename":
        assert final == b"0123456789" and not temps and manifest is None
    else:
        assert final == b"0123456789" and not temps and manifest is not None
        assert json.loads(manifest)["entries"][0]["last_offset"] == 0


def test_a_bad_spec_stops_the_process_at_import(tmp_path) -> None:
    result = _run("import binlake.storage", tmp_path, "bronze.after_renam=1")
    assert result.returncode == 1
    assert "FailpointSpecError" in result.stderr and "after_renam" in result.stderr


FAULT = """
from binlake import failpoints
print([failpoints.fault(failpoints.LOSE_FETCHED) for _ in range(3)])
print(failpoints.fault(failpoints.MID_WRITE))
"""


def test_a_fault_is_injected_once_and_only_when_switched_on(tmp_path) -> None:
    result = _run(FAULT, tmp_path, failpoints.LOSE_FETCHED)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["[True, False, False]", "False"]
    assert f"binlake fault {failpoints.LOSE_FETCHED} injected" in result.stderr
    unset = _run(FAULT, tmp_path, None)
    assert unset.stdout.split("\n")[:2] == ["[False, False, False]", "False"]

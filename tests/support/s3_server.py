"""A real S3 server for tests: one SeaweedFS `weed mini` per test session (fixture `s3_server`),
a fresh prefix of its bucket per test (fixture `s3_lake`), and the tests' settings with their
lake there (fixture `s3_settings`: `storage_url` and `storage` from the environment, as a
deployment would set them).

The server runs on free ports with its data in a new temp dir; at the end of the session it is
stopped by its PID and its data dir and /tmp sockets are removed. Tests keep apart by prefix.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from binlake.local_stack.foreground import temporary_s3_server
from binlake.local_stack.s3_server import S3Server
from binlake.settings import Settings, load_settings

ACCESS_KEY = "binlake-test-access-key"
SECRET_KEY = "binlake-test-secret-key"
BUCKET = "lake"


@dataclass(frozen=True)
class S3Lake:
    """One test's place on the session's S3 server: `storage_url` is `s3://<bucket>/<prefix>`."""

    endpoint_url: str
    bucket: str
    prefix: str
    region: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)

    @property
    def storage_url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def storage_options(self) -> dict[str, str]:
        """object_store / delta-rs / obstore options (polars `storage_options` too)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def env(self) -> dict[str, str]:
        """Environment variables that point binlake (and any AWS client) at this lake."""
        return {
            **self.storage_options,
            "AWS_DEFAULT_REGION": self.region,
            "BINLAKE_STORAGE_URL": self.storage_url,
        }


def lake_on(server: S3Server, prefix: str | None = None) -> S3Lake:
    """A place under a new (or the given) prefix of `server`'s bucket."""
    return S3Lake(
        endpoint_url=server.endpoint_url,
        bucket=server.bucket,
        prefix=prefix or f"test-{uuid.uuid4().hex[:12]}",
        region=server.region,
        access_key=server.access_key,
        secret_key=server.secret_key,
    )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """The session's S3 server (`.endpoint_url`, `.bucket`, `.access_key`, `.secret_key`)."""
    with temporary_s3_server(
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        bucket=BUCKET,
        prefix="binlake-s3-",
        # Open client connections (delta-rs keeps a pool) can hold a graceful stop up.
        stop_timeout=3.0,
    ) as server:
        yield server


@pytest.fixture
def s3_lake(s3_server: S3Server) -> S3Lake:
    """A fresh prefix of the session server's bucket for one test."""
    return lake_on(s3_server)


STORAGE_ENV = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION")


@pytest.fixture
def s3_settings(settings: Settings, s3_lake: S3Lake, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`settings` (fixture of tests.support.lake) with the lake at `s3_lake`: BINLAKE_STORAGE_URL
    and BINLAKE_STORAGE__* set, whatever AWS_* the machine has."""
    for name in STORAGE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BINLAKE_STORAGE_URL", s3_lake.storage_url)
    monkeypatch.setenv("BINLAKE_STORAGE__ENDPOINT_URL", s3_lake.endpoint_url)
    monkeypatch.setenv("BINLAKE_STORAGE__REGION", s3_lake.region)
    monkeypatch.setenv("BINLAKE_STORAGE__ACCESS_KEY_ID", s3_lake.access_key)
    monkeypatch.setenv("BINLAKE_STORAGE__SECRET_ACCESS_KEY", s3_lake.secret_key)
    return load_settings()

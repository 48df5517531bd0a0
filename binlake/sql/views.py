"""The one set of SQL views over the lake, generated from the settings.

Every name lives in the ClickHouse database `lake`:

lake.<db>__<table>               silver current state: live rows, business columns only
lake.<db>__<table>__provenance   live rows with their provenance (`_source_ts_ms`, `_offset`, ...)
lake.<db>__<table>__history      SCD type 2 history (tables in `silver.history_tables`)
lake.gold__<name>                gold, `_`-columns dropped
lake.freshness                   the freshness table, plus `seconds_since_check`

Two targets read the same Delta tables: "embedded" (chDB in binlake's own process) and "server"
(a ClickHouse server). A local lake is `deltaLakeLocal(path)`; an object-store lake is
`deltaLake(binlake_lake, url = ...)` through the named collection `binlake_lake` holding the keys
(the server's configuration defines it; the embedded engine creates it from the settings with
`named_collection_sql`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlparse

from binlake.errors import ConfigurationError
from binlake.freshness_table import FRESHNESS_TABLE
from binlake.gold.tables import GOLD_TABLE_NAMES
from binlake.settings import Settings
from binlake.silver.delta_table import DELETED, STORED_PROVENANCE
from binlake.storage import LakeStorage

Target = Literal["embedded", "server"]
DATABASE = "lake"
NAMED_COLLECTION = "binlake_lake"
DELTA_LOG = "_delta_log"
FRESHNESS_VIEW = "freshness"


@dataclass(frozen=True)
class LakeView:
    """One view: its name in `lake`, the Delta table it reads (relative to the lake root) and
    the SELECT over `{source}` (the table function reading that Delta table)."""

    name: str
    target: Target
    relative_path: str
    select: str
    # The table function reading the Delta table; may hold object-store keys: never shown.
    source: str = field(repr=False)

    @property
    def qualified_name(self) -> str:
        return f"{DATABASE}.{quote_identifier(self.name)}"

    def create_sql(self) -> str:
        body = self.select.format(source=self.source)
        return f"CREATE OR REPLACE VIEW {self.qualified_name} AS {body}"


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def lake_views(settings: Settings, *, target: Target, existing_only: bool = True) -> list[LakeView]:
    """The views of `settings`' lake for `target`; with `existing_only`, only those whose Delta
    table has a `_delta_log` already (the others appear on a later call)."""
    storage = LakeStorage.from_settings(settings)
    wanted: list[tuple[str, str, str]] = []
    live = f"NOT {DELETED}"
    business = ", ".join(STORED_PROVENANCE)
    for table in settings.tables:
        db, name = table.split(".")
        path = f"silver/{db}/{name}"
        wanted.append(
            (f"{db}__{name}", path, f"SELECT * EXCEPT ({business}) FROM {{source}} WHERE {live}")
        )
        wanted.append(
            (
                f"{db}__{name}__provenance",
                path,
                f"SELECT * EXCEPT ({DELETED}) FROM {{source}} WHERE {live}",
            )
        )
        if table in settings.silver.history_tables:
            wanted.append((f"{db}__{name}__history", f"{path}__history", "SELECT * FROM {source}"))
    for name in GOLD_TABLE_NAMES:
        wanted.append((f"gold__{name}", f"gold/{name}", "SELECT COLUMNS('^[^_]') FROM {source}"))
    wanted.append(
        (
            FRESHNESS_VIEW,
            FRESHNESS_TABLE,
            "SELECT *, dateDiff('millisecond', checked_at, now64(6)) / 1000.0 "
            "AS seconds_since_check FROM {source}",
        )
    )
    return [
        LakeView(view, target, path, select, delta_source(settings, storage, path))
        for view, path, select in wanted
        if not existing_only or storage.exists(f"{path}/{DELTA_LOG}")
    ]


def delta_source(settings: Settings, storage: LakeStorage, relative: str) -> str:
    """The ClickHouse table function reading the Delta table at `relative` under the lake."""
    if storage.is_local:
        return f"deltaLakeLocal({quote_string(storage.full_path(relative))})"
    scheme = urlparse(storage.url).scheme.lower()
    if scheme not in ("s3", "gs"):
        raise ConfigurationError(
            f"the SQL views read an object-store lake on S3 or GCS only, not {scheme}:// "
            f"(storage_url {storage.url.split('@')[-1]})"
        )
    # Both targets read an object store through the named collection, so no key is ever part
    # of a view's text (which system.tables and SHOW CREATE show).
    url = http_url(settings, storage.uri(relative))
    return f"deltaLake({NAMED_COLLECTION}, url = {quote_string(url + '/')})"


def named_collection_sql(settings: Settings) -> str:
    """The statement creating `binlake_lake` with the lake's S3 keys, for the embedded engine
    (a server defines it in its own configuration). Holds secrets: never log it."""
    key = settings.storage.access_key_id.get_secret_value()
    secret = settings.storage.secret_access_key.get_secret_value()
    parts = [f"access_key_id = {quote_string(key)}", f"secret_access_key = {quote_string(secret)}"]
    token = settings.storage.session_token.get_secret_value()
    if token:
        parts.append(f"session_token = {quote_string(token)}")
    if not key:
        parts = ["no_sign_request = 1"]
    return f"CREATE NAMED COLLECTION IF NOT EXISTS {NAMED_COLLECTION} AS {', '.join(parts)}"


def http_url(settings: Settings, object_url: str) -> str:
    """`s3://bucket/key` (or gs://) as the HTTP URL ClickHouse reads: path style on the
    configured endpoint, AWS's (or Google's) virtual-hosted style without one."""
    parsed = urlparse(object_url)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if parsed.scheme == "gs":
        return f"https://storage.googleapis.com/{bucket}/{key}"
    if settings.storage.endpoint_url:
        return f"{settings.storage.endpoint_url}/{bucket}/{key}"
    region = settings.storage.region or "us-east-1"
    return f"https://{bucket}.s3.{region}.amazonaws.com/{key}"


def render_views_sql(views: list[LakeView], *, target: Target) -> str:
    """The statements creating `views` (and database `lake`), one per line, `;`-terminated;
    `views` must come from `lake_views` for the same `target`."""
    for view in views:
        if view.target != target:
            raise ValueError(f"view {view.name} was made for {view.target}, not {target}")
    statements = [f"CREATE DATABASE IF NOT EXISTS {DATABASE}"]
    statements += [view.create_sql() for view in views]
    return "".join(f"{statement};\n" for statement in statements)

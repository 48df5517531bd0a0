"""Resources: the lake (bronze reader and silver/gold IO manager) and the MySQL source.

Every resource is built from ``Settings`` in ``build_resources``; the lake location is the one
value ``settings.lake_url`` and no asset builds a path of its own.

Resource keys:
    bronze_lake      BronzeLake(storage_url)            bronze files listed by the manifest
    lake_io_manager  LakeParquetIOManager(base_dir)     silver and gold Parquet
    mysql_source     MySQLSource(host, port, user, ...) row counts for reconciliation checks
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pymysql
from dagster_polars import PolarsParquetIOManager

from binlake.bronze_layout import MANIFEST_PATH, META_PRIMARY_KEY
from binlake.errors import ConfigurationError, FinalError, RetriableError
from binlake.manifest import Manifest, ManifestEntry
from binlake.settings import Settings
from binlake.storage import LakeStorage
from streams.schema_drift import common_type

if TYPE_CHECKING:
    from upath import UPath

BRONZE_LAKE = "bronze_lake"
LAKE_IO_MANAGER = "lake_io_manager"
MYSQL_SOURCE = "mysql_source"

MYSQL_PASSWORD_ENV = "BINLAKE_MYSQL__PASSWORD"
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_$]+$")


@dataclass(frozen=True)
class BronzeRead:
    """All bronze rows of one table as listed by the manifest at the time of reading."""

    table: str
    frame: pl.DataFrame
    primary_key: list[str]  # empty when the table has none
    manifest_bytes: int  # manifest size consumed: everything before this byte was considered
    entries_read: int  # manifest entries of this table (duplicates of a path counted once)
    paths: list[str] = field(default_factory=list)


class BronzeLake(dg.ConfigurableResource):
    """Bronze as the manifest lists it; never a directory listing.

    A file exists for readers once its manifest entry exists, so reading what the manifest names
    is consistent even while the bronze writer is adding files.
    """

    storage_url: str

    def _storage(self) -> LakeStorage:
        return LakeStorage.from_url(self.storage_url)

    def manifest(self) -> Manifest:
        return Manifest(self._storage())

    def manifest_size(self) -> int:
        """Current size in bytes of the manifest (0 if it does not exist yet)."""
        storage = self._storage()
        info = storage.filesystem.get_file_info(storage.full_path(MANIFEST_PATH))
        return 0 if info.type == pafs.FileType.NotFound else int(info.size or 0)

    def read_manifest_since(self, cursor: int) -> tuple[list[ManifestEntry], int]:
        """Entries appended after byte `cursor` and the cursor to use next time."""
        return self.manifest().read_since(cursor)

    def read_table(self, table: str) -> BronzeRead:
        """Every bronze row of `<db>.<table>`, files concatenated in manifest order.

        Files of one table may have different but compatible schemas (a column added, a type
        widened): each file is first cast to the widest type every column has across the files
        (see ``_widened``), then they are concatenated with ``diagonal_relaxed``, missing
        columns become null.
        """
        storage = self._storage()
        entries, manifest_bytes = Manifest(storage).read_since(0)
        # A retried flush may rewrite a file under the same name; the file is read once.
        by_path: dict[str, ManifestEntry] = {}
        for entry in entries:
            if entry.table == table:
                by_path.pop(entry.path, None)
                by_path[entry.path] = entry
        arrows: list[pa.Table] = []
        primary_key: list[str] = []
        for path, entry in by_path.items():
            try:
                arrow = pq.read_table(storage.full_path(path), filesystem=storage.filesystem)
            except FileNotFoundError as exc:
                raise FinalError(
                    f"bronze file {path} is listed in the manifest but missing from the lake"
                ) from exc
            except OSError as exc:
                raise RetriableError(f"cannot read bronze file {path}: {exc}") from exc
            # The newest file's key wins: a key change (ALTER TABLE) applies from then on.
            primary_key = list(entry.primary_key) or _primary_key_from_metadata(arrow.schema)
            arrows.append(arrow)
        frames = [
            pl.from_arrow(_without_decimal256(arrow))  # type: ignore[arg-type]
            for arrow in _widened(arrows)
        ]
        frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
        return BronzeRead(
            table=table,
            frame=frame,
            primary_key=primary_key,
            manifest_bytes=manifest_bytes,
            entries_read=len(by_path),
            paths=list(by_path),
        )


def _widened(tables: list[pa.Table]) -> list[pa.Table]:
    """`tables` with each column cast to the widest type it has in any of them.

    polars' ``diagonal_relaxed`` alone gets some accepted widenings wrong: timestamp[ms] with
    timestamp[us] gives milliseconds (dropping microseconds), and decimal256 columns must become
    strings of one scale whatever file they come from. Columns whose types have no common type
    (a breaking change, which the bronze schema check reports) are left to polars.
    """
    target: dict[str, pa.DataType | None] = {}
    for table in tables:
        for column in table.schema:
            if column.name not in target:
                target[column.name] = column.type
            elif (known := target[column.name]) is not None and not known.equals(column.type):
                target[column.name] = common_type(known, column.type)
    widened: list[pa.Table] = []
    for table in tables:
        for i, column in enumerate(table.schema):
            wanted = target[column.name]
            if wanted is not None and not column.type.equals(wanted):
                table = table.set_column(i, column.with_type(wanted), table.column(i).cast(wanted))
        widened.append(table)
    return widened


def _without_decimal256(table: pa.Table) -> pa.Table:
    """`table` with its decimal256 columns (MySQL DECIMAL(p>38)) cast to exact decimal strings.

    polars has no 256-bit decimal: ``pl.from_arrow`` panics on decimal256. A string keeps every
    digit; a float or a decimal128 would lose or refuse values.
    """
    schema = table.schema
    wide = [i for i, f in enumerate(schema) if pa.types.is_decimal256(f.type)]
    if not wide:
        return table
    for i in wide:
        as_string = schema.field(i).with_type(pa.string())
        table = table.set_column(i, as_string, table.column(i).cast(pa.string()))
    return table


def _primary_key_from_metadata(schema: Any) -> list[str]:
    raw = (schema.metadata or {}).get(META_PRIMARY_KEY)
    return list(json.loads(raw)) if raw else []


class MySQLSource(dg.ConfigurableResource):
    """The source database, read only for reconciliation (row counts, ad-hoc queries)."""

    host: str
    port: int
    user: str
    password: str
    connect_timeout_seconds: int = 10

    def _connect(self) -> pymysql.connections.Connection:
        try:
            return pymysql.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                connect_timeout=self.connect_timeout_seconds,
                autocommit=True,
            )
        except pymysql.err.OperationalError as exc:
            raise RetriableError(
                f"cannot connect to MySQL at {self.host}:{self.port}: {exc}"
            ) from exc

    def query(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        """Rows of `sql` (with pymysql `%s` parameters in `args`) as tuples."""
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, args)
                return list(cursor.fetchall())
        except pymysql.err.OperationalError as exc:
            raise RetriableError(f"MySQL query failed: {exc}") from exc
        finally:
            connection.close()

    def count_rows(self, table: str) -> int:
        """`SELECT COUNT(*)` of `<db>.<table>`."""
        parts = table.split(".")
        if len(parts) != 2 or not all(_IDENTIFIER.match(p) for p in parts):
            raise ConfigurationError(f"table {table!r} must be <db>.<table> with plain identifiers")
        rows = self.query(f"SELECT COUNT(*) FROM `{parts[0]}`.`{parts[1]}`")
        return int(rows[0][0])


class LakeParquetIOManager(PolarsParquetIOManager):
    """dagster-polars' Parquet IO manager, writing local files atomically.

    Paths are dagster-polars' own: ``<base_dir>/<asset key parts>.parquet``. On a local
    filesystem the file is written under a temporary name and renamed into place, so readers
    (the CLI, the demo, the next asset) never see a half-written silver or gold table.
    """

    def write_df_to_path(self, context: dg.OutputContext, df: pl.DataFrame, path: UPath) -> None:
        if getattr(path, "protocol", "") != "":
            super().write_df_to_path(context, df, path)
            return
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            super().write_df_to_path(context, df, temp)
            os.replace(str(temp), str(path))
        finally:
            if temp.exists():
                temp.unlink()


def lake_base_dir(settings: Settings) -> str:
    """The lake root in the form the IO manager expects (a plain path when local)."""
    storage = LakeStorage.from_url(settings.lake_url)
    return storage.base if storage.is_local else settings.lake_url


def build_lake_io_manager(settings: Settings) -> LakeParquetIOManager:
    return LakeParquetIOManager(base_dir=lake_base_dir(settings))


def build_mysql_source(settings: Settings) -> MySQLSource:
    # Through an EnvVar when the environment carries the password, so the UI shows the variable's
    # name rather than the secret; from the settings value otherwise (e.g. a TOML file).
    password: Any = (
        dg.EnvVar(MYSQL_PASSWORD_ENV)
        if os.environ.get(MYSQL_PASSWORD_ENV) is not None
        else settings.mysql.password.get_secret_value()
    )
    return MySQLSource(
        host=settings.mysql.host,
        port=settings.mysql.port,
        user=settings.mysql.user,
        password=password,
    )


def build_resources(settings: Settings) -> dict[str, Any]:
    return {
        BRONZE_LAKE: BronzeLake(storage_url=settings.lake_url),
        LAKE_IO_MANAGER: build_lake_io_manager(settings),
        MYSQL_SOURCE: build_mysql_source(settings),
    }

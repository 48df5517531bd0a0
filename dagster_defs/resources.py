"""Resources: the lake (bronze reader and silver/gold IO manager) and the MySQL source.

Every resource is built from ``Settings`` in ``build_resources``; the lake location is the one
value ``settings.lake_url`` and no asset builds a path of its own. How an object-store lake is
reached (``settings.storage``: endpoint, region, credentials) goes with it as ``access``
(`LakeAccess`), its secrets as EnvVars when the environment holds them, so the UI shows names.

Resource keys:
    bronze_lake        BronzeLake(storage_url, access)     bronze files listed by the manifest
    silver_lake        SilverLake(storage_url, access)     silver Delta tables (MERGE, time travel)
    silver_io_manager  SilverIOManager(storage_url, access) loads a silver table's current state
    lake_io_manager    LakeParquetIOManager(base_dir, access) gold Parquet
    mysql_source     MySQLSource(host, port, user, ...) row counts for reconciliation checks
    consumer_lag       ConsumerLagSource(bootstrap, group, ...) the bronze writer's lag per table
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from dagster_polars import PolarsParquetIOManager
from pydantic import PrivateAttr

from binlake.bronze.consumer_lag import ConsumerLagProbe, TableLag
from binlake.bronze.manifest import Manifest, ManifestEntry
from binlake.bronze.reader import AlreadyRead, BronzeRead, BronzeReader
from binlake.errors import FinalError
from binlake.settings import STANDARD_STORAGE_ENV, Settings, StorageSettings
from binlake.silver.delta_table import SilverDeltaTable
from binlake.silver.history import SilverHistoryTable
from binlake.silver.reconcile import ComparedColumn, source_content_digest
from binlake.silver.tables import SilverTables
from binlake.source_db import SourceDatabase
from binlake.storage import LakeStorage, object_store_options

if TYPE_CHECKING:
    from upath import UPath

BRONZE_LAKE = "bronze_lake"
SILVER_LAKE = "silver_lake"
SILVER_IO_MANAGER = "silver_io_manager"
LAKE_IO_MANAGER = "lake_io_manager"
MYSQL_SOURCE = "mysql_source"
CONSUMER_LAG = "consumer_lag"

MYSQL_PASSWORD_ENV = "BINLAKE_MYSQL__PASSWORD"
_SECRET_STORAGE_FIELDS = ("access_key_id", "secret_access_key", "session_token")


class LakeAccess(dg.Config):
    """`settings.storage` as resource config: how the lake's object store is reached. All empty
    (the default) for a local lake, or to use only the standard AWS_* variables."""

    endpoint_url: str = ""
    region: str = ""
    allow_http: str = ""
    access_key_id: str = ""
    secret_access_key: str = ""
    session_token: str = ""
    profile: str = ""

    def open(self, storage_url: str) -> LakeStorage:
        """The lake at `storage_url` reached this way. Inside a run Dagster has resolved the
        EnvVars already; outside one (the CLI, the demo) they are read here."""
        values = {
            name: value.get_value("") if isinstance(value, dg.EnvVar) else value
            for name, value in self.__dict__.items()
            if name in type(self).model_fields
        }
        storage = StorageSettings(**{name: value for name, value in values.items() if value})
        return LakeStorage.from_url(storage_url, object_store_options(storage_url, storage))


def lake_access(settings: Settings) -> LakeAccess:
    """`settings.storage` as `LakeAccess`; a secret the environment holds goes in as an EnvVar
    of its variable (the UI shows the name), one from elsewhere (a TOML file) as its value."""
    storage = settings.storage
    values: dict[str, Any] = {
        "endpoint_url": storage.endpoint_url,
        "region": storage.region,
        "allow_http": "" if storage.allow_http is None else str(storage.allow_http).lower(),
        "profile": storage.profile,
    }
    for name in _SECRET_STORAGE_FIELDS:
        secret = getattr(storage, name).get_secret_value()
        variables = (f"BINLAKE_STORAGE__{name.upper()}", *STANDARD_STORAGE_ENV[name])
        holder = next((v for v in variables if secret and os.environ.get(v) == secret), None)
        values[name] = dg.EnvVar(holder) if holder else secret
    return LakeAccess(**values)


class BronzeLake(dg.ConfigurableResource):
    """Bronze as the manifest lists it (`binlake.bronze.reader.BronzeReader`), as a resource."""

    storage_url: str
    access: LakeAccess = LakeAccess()

    def reader(self) -> BronzeReader:
        return BronzeReader(self.access.open(self.storage_url))

    def manifest(self) -> Manifest:
        return self.reader().manifest()

    def manifest_size(self) -> int:
        return self.reader().manifest_size()

    def read_manifest_since(
        self, cursor: int, limit: int | None = None
    ) -> tuple[list[ManifestEntry], int]:
        return self.reader().read_manifest_since(cursor, limit)

    def read_table(self, table: str, consumed: AlreadyRead | None = None) -> BronzeRead:
        return self.reader().read_table(table, consumed)


class SilverLake(dg.ConfigurableResource):
    """The silver Delta tables under the lake root (`binlake.silver.tables.SilverTables`)."""

    storage_url: str
    access: LakeAccess = LakeAccess()

    def tables(self) -> SilverTables:
        return SilverTables.of(self.access.open(self.storage_url))

    def table(self, table: str) -> SilverDeltaTable:
        return self.tables().table(table)

    def rebuild(self, table: str, label: str) -> SilverDeltaTable:
        return self.tables().rebuild(table, label)

    def history(self, table: str) -> SilverHistoryTable:
        return self.tables().history(table)


def _table_of(key: dg.AssetKey) -> str:
    *_, db, name = key.path
    return f"{db}.{name}"


class SilverIOManager(dg.ConfigurableIOManager):
    """Loads a silver asset as its current state; the asset itself writes by MERGE."""

    storage_url: str
    access: LakeAccess = LakeAccess()

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is not None:
            raise FinalError(
                f"silver asset {context.asset_key.to_user_string()} returned a value; silver "
                "assets merge into their Delta table themselves and return MaterializeResult"
            )

    def load_input(self, context: dg.InputContext) -> pl.DataFrame | pl.LazyFrame:
        silver = SilverLake(storage_url=self.storage_url, access=self.access)
        frame = silver.table(_table_of(context.asset_key))
        current = frame.read_current()
        typing_type = getattr(context.dagster_type, "typing_type", None)
        return current.lazy() if typing_type is pl.LazyFrame else current


class MySQLSource(dg.ConfigurableResource):
    """The source database, read only (`binlake.source_db.SourceDatabase`), for reconciliation
    and freshness."""

    host: str
    port: int
    user: str
    password: str
    connect_timeout_seconds: int = 10

    def database(self) -> SourceDatabase:
        return SourceDatabase(
            self.host, self.port, self.user, self.password, self.connect_timeout_seconds
        )

    def count_rows(self, table: str) -> int:
        return self.database().count_rows(table)

    def column_types(self, table: str) -> list[tuple[str, str, int | None]]:
        return self.database().column_types(table)

    def content_digest(self, table: str, columns: list[ComparedColumn]) -> tuple[int, int]:
        return source_content_digest(self.database(), table, columns)

    def last_commit_time(self, table: str) -> datetime | None:
        return self.database().last_commit_time(table)


class LakeParquetIOManager(PolarsParquetIOManager):
    """dagster-polars' Parquet IO manager, writing whole files only, on disk or object store.

    Paths are dagster-polars' own: ``<base_dir>/<asset key parts>.parquet``. On a local
    filesystem the file is written under a temporary name and renamed into place, so readers
    (the CLI, the demo, the next asset) never see a half-written gold table. On an object store
    (`base_dir` s3://, gs://, az://) every file operation goes through the lake's pyarrow
    filesystem, opened with `access` (fsspec's s3fs/gcsfs/adlfs are not needed); one PUT makes
    a file whole.
    """

    access: LakeAccess = LakeAccess()
    _object_store: pafs.FileSystem | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        super().setup_for_execution(context)
        storage = self.access.open(self.base_dir) if self.base_dir else None
        self._object_store = None if storage is None or storage.is_local else storage.filesystem

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        """As dagster-polars, and for a run over several partitions (a single-run backfill
        policy) a ``{partition key: DataFrame}`` mapping, each frame stored as its partition."""
        if not isinstance(obj, Mapping):
            super().handle_output(context, obj)
            return
        paths = self._get_paths_for_partitions(context)
        if set(obj) != set(paths):
            raise FinalError(
                f"{context.asset_key.to_user_string()} returned partitions "
                f"{sorted(obj)[:3]}... for a run of {sorted(paths)[:3]}... ({len(obj)} vs "
                f"{len(paths)}): every partition of the run needs exactly one DataFrame"
            )
        for key, path in paths.items():
            self.make_directory(path.parent)
            self.dump_to_path(context=context, obj=obj[key], path=path)
        context.add_output_metadata({"partitions_written": len(paths)})

    def write_df_to_path(self, context: dg.OutputContext, df: pl.DataFrame, path: UPath) -> None:
        if self._object_store is not None:
            buffer = io.BytesIO()
            df.write_parquet(buffer, compression="zstd")
            with self._object_store.open_output_stream(_object_key(path)) as out:
                out.write(buffer.getvalue())
            return
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

    def scan_df_from_path(self, path: UPath, context: dg.InputContext) -> pl.LazyFrame:
        if self._object_store is None:
            return super().scan_df_from_path(path, context)
        arrow = pq.read_table(_object_key(path), filesystem=self._object_store)
        return pl.from_arrow(arrow).lazy()  # type: ignore[union-attr]

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        if self._object_store is not None and not self.path_exists(path):
            raise FileNotFoundError(f"{path} does not exist")
        return super().load_from_path(context, path)

    def path_exists(self, path: UPath) -> bool:
        if self._object_store is None:
            return super().path_exists(path)
        return self._info(path).type != pafs.FileType.NotFound

    def make_directory(self, path: UPath) -> None:
        if self._object_store is None:  # an object store has no directories to make
            super().make_directory(path)

    def unlink(self, path: UPath) -> None:
        if self._object_store is None:
            super().unlink(path)
        else:
            self._object_store.delete_file(_object_key(path))

    def _handle_transition_to_partitioned_asset(
        self, context: dg.OutputContext, path: UPath
    ) -> None:
        if self._object_store is None:
            super()._handle_transition_to_partitioned_asset(context, path)
        elif self._info(path).type == pafs.FileType.File:
            self.unlink(path)  # a file of the asset from before it was partitioned

    def stored_files(self, path: UPath) -> list[UPath]:
        """The partition files stored for the asset at `path` (``<path w/o suffix>/*<suffix>``),
        sorted; empty if none."""
        folder = path.with_suffix("")
        if self._object_store is None:
            return sorted(folder.glob(f"*{path.suffix}"))
        selector = pafs.FileSelector(_object_key(folder), allow_not_found=True)
        names = [
            info.base_name
            for info in self._object_store.get_file_info(selector)
            if info.type == pafs.FileType.File and info.base_name.endswith(path.suffix)
        ]
        return [folder / name for name in sorted(names)]

    def _info(self, path: UPath) -> pafs.FileInfo:
        assert self._object_store is not None
        return self._object_store.get_file_info(_object_key(path))


def _object_key(path: UPath) -> str:
    """`path` (scheme://bucket/key) as a pyarrow filesystem path: bucket/key."""
    return str(path).split("://", 1)[1]


def lake_base_dir(settings: Settings) -> str:
    """The lake root in the form the IO manager expects (a plain path when local)."""
    storage = LakeStorage.from_settings(settings)
    return storage.base if storage.is_local else settings.lake_url


def build_lake_io_manager(settings: Settings) -> LakeParquetIOManager:
    return LakeParquetIOManager(base_dir=lake_base_dir(settings), access=lake_access(settings))


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


class ConsumerLagSource(dg.ConfigurableResource):
    """The bronze writer's consumer lag per table (`binlake.bronze.consumer_lag`)."""

    bootstrap_servers: str
    group: str
    topic_prefix: str
    value_format: str = "json"
    schema_registry_url: str = ""
    timeout_seconds: float = 5.0  # a sensor tick waits at most about this for a broker that is down

    def measure(self, tables: Sequence[str]) -> dict[str, TableLag | str]:
        """Each table's lag, or why it is unknown (the broker did not answer)."""
        probe = ConsumerLagProbe(
            self.bootstrap_servers,
            self.group,
            self.topic_prefix,
            self.value_format,
            self.schema_registry_url,
            self.timeout_seconds,
        )
        return probe.measure(tables)


def build_consumer_lag(settings: Settings) -> ConsumerLagSource:
    return ConsumerLagSource(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group=settings.bronze.app_id,
        topic_prefix=settings.kafka.topic_prefix,
        value_format=settings.kafka.value_format,
        schema_registry_url=settings.kafka.schema_registry_url,
    )


def build_resources(settings: Settings) -> dict[str, Any]:
    return {
        BRONZE_LAKE: BronzeLake(storage_url=settings.lake_url, access=lake_access(settings)),
        SILVER_LAKE: SilverLake(storage_url=settings.lake_url, access=lake_access(settings)),
        SILVER_IO_MANAGER: SilverIOManager(
            storage_url=settings.lake_url, access=lake_access(settings)
        ),
        LAKE_IO_MANAGER: build_lake_io_manager(settings),
        MYSQL_SOURCE: build_mysql_source(settings),
        CONSUMER_LAG: build_consumer_lag(settings),
    }

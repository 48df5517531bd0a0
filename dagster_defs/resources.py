"""Resources: the lake (bronze reader and silver/gold IO manager) and the MySQL source.

Every resource is built from ``Settings`` in ``build_resources``; the lake location is the one
value ``settings.lake_url`` and no asset builds a path of its own. How an object-store lake is
reached (``settings.storage``: endpoint, region, credentials) goes with it as ``access``
(`LakeAccess`), its secrets as EnvVars when the environment holds them, so the UI shows names.

Resource keys:
    bronze_lake        BronzeLake(storage_url, access)     bronze files listed by the manifest
    silver_lake        SilverLake(storage_url, access)     silver Delta tables (MERGE, time travel)
    silver_io_manager  SilverIOManager(storage_url, access) loads a silver table's current state
    lake_io_manager    GoldIOManager(storage_url, access)   gold Delta tables, hours replaced whole
    mysql_source     MySQLSource(host, port, user, ...) row counts for reconciliation checks
    consumer_lag       ConsumerLagSource(bootstrap, group, ...) the bronze writer's lag per table
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import polars as pl

from binlake.bronze.consumer_lag import ConsumerLagProbe, TableLag
from binlake.bronze.manifest import Manifest, ManifestEntry
from binlake.bronze.reader import AlreadyRead, BronzeRead, BronzeReader
from binlake.errors import FinalError
from binlake.gold.delta_table import GoldDeltaTable
from binlake.gold.tables import gold_table
from binlake.settings import STANDARD_STORAGE_ENV, Settings, StorageSettings
from binlake.silver.delta_table import SilverDeltaTable
from binlake.silver.history import SilverHistoryTable
from binlake.silver.reconcile import ComparedColumn, source_content_digest
from binlake.silver.tables import SilverTables
from binlake.source_db import SourceDatabase
from binlake.storage import LakeStorage, object_store_options

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


class GoldIOManager(dg.ConfigurableIOManager):
    """Gold assets as Delta tables (`binlake.gold.delta_table.GoldDeltaTable`) at
    ``<lake>/gold/<name>``, `name` the last part of the asset key.

    A run's output is one DataFrame holding every row of the run's hours (its partition time
    window); it replaces those hours in one Delta commit, so an hour left without rows is
    emptied. Loading gives the hours of the requested partitions (all rows when unpartitioned).
    """

    storage_url: str
    access: LakeAccess = LakeAccess()

    def table(self, key: dg.AssetKey) -> GoldDeltaTable:
        return gold_table(self.access.open(self.storage_url), key.path[-1])

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if not isinstance(obj, pl.DataFrame):
            raise FinalError(
                f"gold asset {context.asset_key.to_user_string()} returned {type(obj).__name__}; "
                "a gold asset returns one polars DataFrame with the rows of all its run's hours"
            )
        if not context.has_asset_partitions:
            raise FinalError(
                f"gold asset {context.asset_key.to_user_string()} is not partitioned by hour; "
                "gold replaces the hours of a run"
            )
        window = context.asset_partitions_time_window
        version = self.table(context.asset_key).replace_hours(
            obj, _naive_utc(window.start), _naive_utc(window.end)
        )
        context.add_output_metadata(
            {"partitions_written": len(context.asset_partition_keys), "delta_version": version}
        )

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        table = self.table(context.asset_key)
        if not context.has_asset_partitions:
            return table.read()
        window = context.asset_partitions_time_window
        return table.read(hours=(_naive_utc(window.start), _naive_utc(window.end)))


def _naive_utc(moment: datetime) -> datetime:
    """Gold hours are UTC wall clock without a zone, as the source stores ``created_at``."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def build_gold_io_manager(settings: Settings) -> GoldIOManager:
    return GoldIOManager(storage_url=settings.lake_url, access=lake_access(settings))


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
        LAKE_IO_MANAGER: build_gold_io_manager(settings),
        MYSQL_SOURCE: build_mysql_source(settings),
        CONSUMER_LAG: build_consumer_lag(settings),
    }

"""Resources: the lake (bronze reader and silver/gold IO manager) and the MySQL source.

Every resource is built from ``Settings`` in ``build_resources``; the lake location is the one
value ``settings.lake_url`` and no asset builds a path of its own.

Resource keys:
    bronze_lake        BronzeLake(storage_url)            bronze files listed by the manifest
    silver_lake        SilverLake(storage_url)            silver Delta tables (MERGE, time travel)
    silver_io_manager  SilverIOManager(storage_url)       loads a silver table's current state
    lake_io_manager    LakeParquetIOManager(base_dir)     gold Parquet
    mysql_source     MySQLSource(host, port, user, ...) row counts for reconciliation checks
    consumer_lag       ConsumerLagSource(bootstrap, group, ...) the bronze writer's lag per table
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pymysql
from dagster_polars import PolarsParquetIOManager

from binlake.bronze.consumer_lag import TableLag, commit_time_for, lag_or_reason, measure_lag
from binlake.bronze.layout import MANIFEST_PATH, META_PRIMARY_KEY, OP
from binlake.bronze.manifest import Manifest, ManifestEntry, live_entries
from binlake.bronze.schema_drift import common_type
from binlake.consumer_groups import GroupOffsetsClient
from binlake.errors import ConfigurationError, FinalError, RetriableError
from binlake.settings import Settings
from binlake.silver.consumed import ConsumedOffsets
from binlake.silver.delta_table import SilverDeltaTable
from binlake.silver.history import SilverHistoryTable
from binlake.silver.reconcile import ComparedColumn, source_digest_sql
from binlake.storage import LakeStorage
from cdc.column_defaults import column_default
from cdc.envelope import TOMBSTONE, TRUNCATE

if TYPE_CHECKING:
    from upath import UPath

BRONZE_LAKE = "bronze_lake"
SILVER_LAKE = "silver_lake"
SILVER_IO_MANAGER = "silver_io_manager"
LAKE_IO_MANAGER = "lake_io_manager"
MYSQL_SOURCE = "mysql_source"
CONSUMER_LAG = "consumer_lag"

MYSQL_PASSWORD_ENV = "BINLAKE_MYSQL__PASSWORD"
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_$]+$")
_UNKNOWN_SYSTEM_VARIABLE = 1193  # MySQL error ER_UNKNOWN_SYSTEM_VARIABLE


@dataclass(frozen=True)
class BronzeRead:
    """All bronze rows of one table as listed by the manifest at the time of reading."""

    table: str
    frame: pl.DataFrame
    primary_key: list[str]  # empty when the table has none
    manifest_bytes: int  # manifest size consumed: everything before this byte was considered
    entries_read: int  # manifest entries of this table (duplicates of a path counted once)
    paths: list[str] = field(default_factory=list)
    # Per column, the value rows that existed before the column was added hold in the source
    # (its default when added, `cdc.column_defaults`), as readers get the column's values
    # (decimal256 as text). Columns without a default are not listed: their fill is null.
    column_defaults: dict[str, Any] = field(default_factory=dict)
    # The manifest entries read (one per path), for the schema guard (`schema_versions_read`).
    entries: list[ManifestEntry] = field(default_factory=list)

    @property
    def schema_version(self) -> int:
        """The newest bronze schema version among the files read (0: none tracked)."""
        return max((e.schema_version for e in self.entries), default=0)


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

    def read_manifest_since(
        self, cursor: int, limit: int | None = None
    ) -> tuple[list[ManifestEntry], int]:
        """Entries appended after byte `cursor` (at most `limit`) and the cursor to use next."""
        return self.manifest().read_since(cursor, limit=limit)

    def read_table(self, table: str, consumed: ConsumedOffsets | None = None) -> BronzeRead:
        """Bronze rows of `<db>.<table>`, files concatenated in manifest order.

        With `consumed`, only what a silver table has not merged yet: manifest entries after
        its manifest cursor, files not wholly inside its offset ranges, rows outside them.
        Without, every row.

        Files of one table may have different but compatible schemas (a column added, a type
        widened): each file is first cast to the widest type every column has across the files
        (see ``_widened``), then they are concatenated with ``diagonal_relaxed``. A column a file
        lacks (the file is older than the column) gets the column's default as a newer file's
        schema records it, which is what MySQL gave the rows that existed when the column was
        added; without a recorded default it is null.
        """
        storage = self._storage()
        cursor = 0 if consumed is None else consumed.manifest_cursor
        if cursor and self.manifest_size() < cursor:
            raise FinalError(
                f"the bronze manifest is shorter than byte {cursor} that silver {table} has "
                "read up to: bronze was replaced under silver; rebuild silver from bronze"
            )
        entries, manifest_bytes = Manifest(storage).read_since(cursor)
        # A file rewritten under its name is read once; files compacted away or expired are not.
        by_path = {
            entry.path: entry
            for entry in live_entries(e for e in entries if e.table == table)
            if consumed is None or not consumed.covers_entry(entry)
        }
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
        defaults = _column_defaults(table, arrows)
        frames = [
            pl.from_arrow(_without_decimal256(arrow))  # type: ignore[arg-type]
            for arrow in _with_defaults(_widened(arrows), defaults)
        ]
        frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
        if consumed is not None:
            frame = consumed.unconsumed(frame)
        return BronzeRead(
            table=table,
            frame=frame,
            primary_key=primary_key,
            manifest_bytes=manifest_bytes,
            entries_read=len(by_path),
            paths=list(by_path),
            column_defaults={name: _reader_value(value) for name, value in defaults.items()},
            entries=list(by_path.values()),
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


def _column_defaults(table: str, arrows: list[pa.Table]) -> dict[str, pa.Scalar]:
    """Each column's recorded default (`cdc.column_defaults`), from the newest file holding it.

    Every file of a schema version carries the default the column was added with (the writer's
    cumulative schema keeps it), so any file would do; the newest one is the table's latest word.
    """
    defaults: dict[str, pa.Scalar] = {}
    for arrow in reversed(arrows):
        for column in arrow.schema:
            if column.name in defaults:
                continue
            try:
                value = column_default(column)
            except ValueError as exc:
                raise FinalError(f"bronze {table}: {exc}") from None
            if value is not None:
                defaults[column.name] = value
    return defaults


def _with_defaults(tables: list[pa.Table], defaults: dict[str, pa.Scalar]) -> list[pa.Table]:
    """`tables` with each column that has a default and that a table lacks added, filled with it.

    A file lacks a column only when it is older than the column (the bronze writer keeps dropped
    columns): its rows existed before the column was added, and the source gave them the default.
    """
    # The type every file holding the column has after `_widened`.
    types = {f.name: f.type for table in tables for f in table.schema if f.name in defaults}
    filled: list[pa.Table] = []
    for table in tables:
        for name, value in defaults.items():
            if name not in table.schema.names:
                wanted = types.get(name, value.type)
                fill = pa.repeat(value.cast(wanted), table.num_rows)
                if OP in table.schema.names:
                    # A tombstone (a file of keys only, too) or a TRUNCATE carries no row:
                    # nothing to fill. (`t` is also an old bronze file's tombstone.)
                    no_row = pc.is_in(table.column(OP), pa.array([TOMBSTONE, TRUNCATE]))
                    fill = pc.if_else(no_row, pa.scalar(None, wanted), fill)
                table = table.append_column(pa.field(name, wanted), fill)
        filled.append(table)
    return filled


def _reader_value(value: pa.Scalar) -> Any:
    """`value` as readers of `BronzeRead.frame` get it (a decimal256 as exact text)."""
    one = pa.table({"value": pa.array([value.as_py()], value.type)})
    return _without_decimal256(one).column(0)[0].as_py()


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
        # Fixed-point text with every digit of the scale, as MySQL prints it: Arrow's own cast
        # writes small values in exponent notation ("-1E-30").
        text = [None if v is None else format(v, "f") for v in table.column(i).to_pylist()]
        table = table.set_column(i, as_string, pa.array(text, pa.string()))
    return table


def _primary_key_from_metadata(schema: Any) -> list[str]:
    raw = (schema.metadata or {}).get(META_PRIMARY_KEY)
    return list(json.loads(raw)) if raw else []


def silver_table_uri(lake_url: str, table: str) -> str:
    """Where the Delta table of silver `<db>.<table>` lives: ``<lake>/silver/<db>/<table>``."""
    db, name = table.split(".")
    return f"{lake_url.rstrip('/')}/silver/{db}/{name}"


class SilverLake(dg.ConfigurableResource):
    """The silver Delta tables under the lake root."""

    storage_url: str

    def table(self, table: str) -> SilverDeltaTable:
        return SilverDeltaTable(silver_table_uri(self.storage_url, table))

    def rebuild(self, table: str, label: str) -> SilverDeltaTable:
        """A point-in-time rebuild of `<db>.<table>`: ``<lake>/rebuilds/silver/<db>/<table>/<label>``."""
        db, name = table.split(".")
        return SilverDeltaTable(
            f"{self.storage_url.rstrip('/')}/rebuilds/silver/{db}/{name}/{label}"
        )

    def history(self, table: str) -> SilverHistoryTable:
        """The SCD type 2 history of `<db>.<table>`: ``<lake>/silver/<db>/<table>__history``."""
        return SilverHistoryTable(f"{silver_table_uri(self.storage_url, table)}__history")


def _table_of(key: dg.AssetKey) -> str:
    *_, db, name = key.path
    return f"{db}.{name}"


class SilverIOManager(dg.ConfigurableIOManager):
    """Loads a silver asset as its current state; the asset itself writes by MERGE."""

    storage_url: str

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is not None:
            raise FinalError(
                f"silver asset {context.asset_key.to_user_string()} returned a value; silver "
                "assets merge into their Delta table themselves and return MaterializeResult"
            )

    def load_input(self, context: dg.InputContext) -> pl.DataFrame | pl.LazyFrame:
        frame = SilverLake(storage_url=self.storage_url).table(_table_of(context.asset_key))
        current = frame.read_current()
        typing_type = getattr(context.dagster_type, "typing_type", None)
        return current.lazy() if typing_type is pl.LazyFrame else current


def _split_table(table: str) -> tuple[str, str]:
    parts = table.split(".")
    if len(parts) != 2 or not all(_IDENTIFIER.match(p) for p in parts):
        raise ConfigurationError(f"table {table!r} must be <db>.<table> with plain identifiers")
    return parts[0], parts[1]


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
        db, name = _split_table(table)
        rows = self.query(f"SELECT COUNT(*) FROM `{db}`.`{name}`")
        return int(rows[0][0])

    def column_types(self, table: str) -> list[tuple[str, str, int | None]]:
        """(name, DATA_TYPE, DATETIME_PRECISION) of each column of `<db>.<table>`, in order."""
        db, name = _split_table(table)
        rows = self.query(
            "SELECT COLUMN_NAME, DATA_TYPE, DATETIME_PRECISION FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (db, name),
        )
        return [(str(n), str(t), None if p is None else int(p)) for n, t, p in rows]

    def content_digest(self, table: str, columns: list[ComparedColumn]) -> tuple[int, int]:
        """(row count, content digest) of `<db>.<table>`, computed by the server."""
        db, name = _split_table(table)
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET SESSION time_zone = '+00:00'")  # TIMESTAMP text in UTC
                cursor.execute(source_digest_sql(db, name, columns))
                count, digest = cursor.fetchone()
        except pymysql.err.OperationalError as exc:
            raise RetriableError(f"MySQL query failed: {exc}") from exc
        finally:
            connection.close()
        return int(count), int(digest)

    def last_commit_time(self, table: str) -> datetime | None:
        """When `<db>.<table>` last changed (InnoDB UPDATE_TIME, 1 s resolution), in UTC.

        None when the server does not know: UPDATE_TIME is NULL after a restart (or once the
        table left InnoDB's cache) until the next write. MySQL 8 caches it for
        `information_schema_stats_expiry` (24 h) unless the session sets 0, done here;
        MariaDB and MySQL 5.7 have no such cache (and no such variable). UNIX_TIMESTAMP reads
        the value in the session's time zone, so the result does not depend on it.
        """
        db, name = _split_table(table)
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                try:
                    cursor.execute("SET SESSION information_schema_stats_expiry = 0")
                except pymysql.err.OperationalError as exc:
                    if exc.args[0] != _UNKNOWN_SYSTEM_VARIABLE:
                        raise
                    # MariaDB, MySQL 5.7: no such variable, nothing cached
                cursor.execute(
                    "SELECT UNIX_TIMESTAMP(UPDATE_TIME) FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                    (db, name),
                )
                row = cursor.fetchone()
        except pymysql.err.OperationalError as exc:
            raise RetriableError(f"MySQL query failed: {exc}") from exc
        finally:
            connection.close()
        if row is None or row[0] is None:
            return None
        return datetime.fromtimestamp(float(row[0]), tz=UTC)


class LakeParquetIOManager(PolarsParquetIOManager):
    """dagster-polars' Parquet IO manager, writing local files atomically.

    Paths are dagster-polars' own: ``<base_dir>/<asset key parts>.parquet``. On a local
    filesystem the file is written under a temporary name and renamed into place, so readers
    (the CLI, the demo, the next asset) never see a half-written silver or gold table.
    """

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


class ConsumerLagSource(dg.ConfigurableResource):
    """The bronze writer's consumer lag per table, from Kafka (see `binlake.bronze.consumer_lag`)."""

    bootstrap_servers: str
    group: str
    topic_prefix: str
    value_format: str = "json"
    schema_registry_url: str = ""
    timeout_seconds: float = 5.0  # a sensor tick waits at most about this for a broker that is down

    def measure(self, tables: Sequence[str]) -> dict[str, TableLag | str]:
        """Each table's lag, or why it is unknown (the broker did not answer)."""
        commit_time = commit_time_for(
            self.value_format, self.schema_registry_url, self.topic_prefix
        )
        client = GroupOffsetsClient(self.bootstrap_servers, timeout=self.timeout_seconds)
        topics = {t: f"{self.topic_prefix}.{t}" for t in tables}
        return lag_or_reason(lambda: measure_lag(client, commit_time, self.group, topics), tables)


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
        BRONZE_LAKE: BronzeLake(storage_url=settings.lake_url),
        SILVER_LAKE: SilverLake(storage_url=settings.lake_url),
        SILVER_IO_MANAGER: SilverIOManager(storage_url=settings.lake_url),
        LAKE_IO_MANAGER: build_lake_io_manager(settings),
        MYSQL_SOURCE: build_mysql_source(settings),
        CONSUMER_LAG: build_consumer_lag(settings),
    }

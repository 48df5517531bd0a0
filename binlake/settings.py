"""binlake's one settings object.

Every address, path, port and tuning knob lives here. Values come from, in order of precedence:
keyword arguments, environment variables (``BINLAKE_<GROUP>__<FIELD>``, e.g.
``BINLAKE_MYSQL__PORT=3307``), then an optional TOML file named by ``BINLAKE_CONFIG``, then the
defaults below. Settings are validated when loaded, so a typo fails at start-up, not mid-stream.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from binlake.settings_errors import (
    CONFIG_FILE_ENV,
    InvalidSettings,
    environment_problems,
    without_credentials,
)

LOCAL_PII_KEY = "binlake-local-pii-key"

_IDENTIFIER = re.compile(r"^[A-Za-z0-9_]+$")


def _is_dotted_name(name: str, parts: int) -> bool:
    """`name` is `parts` plain identifiers joined by dots (`<db>.<table>`: 2)."""
    split = name.split(".")
    return len(split) == parts and all(_IDENTIFIER.match(part) for part in split)


def _none_from_text(value: object) -> object:
    """An optional setting left unset: `Settings.env()` passes None to child processes as the
    text "None", and an empty variable unsets too."""
    if isinstance(value, str) and value.strip().lower() in ("", "none"):
        return None
    return value


class MySQLSettings(BaseModel):
    """The MySQL (or MySQL-compatible) source whose binlog binlake captures."""

    host: str = Field("127.0.0.1", description="Host the source database listens on.")
    port: int = Field(3307, ge=0, le=65535, description="Port; 0 picks a free one at `binlake up`.")
    user: str = Field("cdc", description="User Debezium and the reconciliation checks connect as.")
    password: SecretStr = Field(SecretStr("cdc"), description="Password of `user`.")
    admin_user: str = Field("root", description="Admin user (local stack and demo only).")
    admin_password: SecretStr = Field(SecretStr(""), description="Password of `admin_user`.")
    flavor: Literal["mysql", "mariadb"] = Field(
        "mysql",
        description="Which server the source is: MySQL (Debezium's MySQL connector) or MariaDB "
        "(its MariaDB connector). `binlake up` captures its local MariaDB as `mariadb`.",
    )
    server_id: int = Field(1, ge=1, description="server_id of the local MariaDB instance.")
    databases: list[str] = Field(["shop"], description="Databases Debezium captures.")

    @field_validator("databases")
    @classmethod
    def _plain_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _IDENTIFIER.match(name):
                raise ValueError(f"database name {name!r} must match {_IDENTIFIER.pattern}")
        return value


class KafkaSettings(BaseModel):
    """The Kafka-API broker the change topics live on."""

    bootstrap_servers: str = Field("127.0.0.1:19092", description="host:port[,host:port...]")
    topic_prefix: str = Field(
        "binlake", description="Debezium `topic.prefix`; topics are <prefix>.<db>.<table>."
    )
    value_format: Literal["json", "avro"] = Field(
        "json", description="Converter Debezium writes with: JSON with schemas, or Confluent Avro."
    )
    schema_registry_url: str = Field(
        "", description="Confluent-compatible schema registry; required when value_format=avro."
    )
    max_record_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024 * 1024,
        description="Largest change record (key + value, serialized) carried end to end. Drives "
        "every limit on the path: Connect's producer (`max.request.size`), the change topics' "
        "`max.message.bytes`, the broker's `message.max.bytes`, the bronze worker's fetch sizes "
        "and, unless set, `bronze.max_message_bytes`. An update carries both images of its "
        "row, so the default lets a row of up to about 16 MB (a full MEDIUMTEXT) change.",
    )

    @property
    def port(self) -> int:
        return int(self.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])

    @field_validator("topic_prefix")
    @classmethod
    def _plain_prefix(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9_-]+$", value):
            raise ValueError(f"topic prefix {value!r} may hold only letters, digits, '_' and '-'")
        return value


class ConnectSettings(BaseModel):
    """Kafka Connect worker running Debezium's MySQL connector."""

    url: str = Field("http://127.0.0.1:18083", description="Connect REST API base URL.")
    connector_name: str = Field("binlake-mysql", description="Name of the Debezium connector.")
    database_server_id: int = Field(
        5401, ge=1, description="Replica server id Debezium presents to the source; unique."
    )
    poll_interval_ms: int = Field(20, ge=1, description="Debezium `poll.interval.ms`.")
    group_id: str = Field("binlake-connect", description="Connect worker group id.")
    column_truncate_to_length_chars: dict[str, int] = Field(
        {},
        description="Columns Debezium truncates before sending, `<db>.<table>.<column>` -> "
        "characters (Debezium `column.truncate.to.<n>.chars`): a way past "
        "`kafka.max_record_bytes` for one huge column. Silver then differs from the source in "
        "that column, and the reconciliation check says so.",
    )
    column_exclude_list: list[str] = Field(
        [],
        description="Columns Debezium never sends, `<db>.<table>.<column>` (Debezium "
        "`column.exclude.list`); they are absent from bronze and silver.",
    )
    exactly_once: bool = Field(
        True,
        description="Exactly-once source delivery (KIP-618): the worker commits Debezium's records "
        "and its source offsets in one Kafka transaction (`exactly.once.source.support`), the "
        "connector requires it (`exactly.once.support=required`), and readers skip aborted "
        "records (`isolation.level=read_committed`). Off, a crashed worker re-sends what it "
        "wrote since its last offset commit; silver stays exact either way.",
    )
    health_interval_seconds: int = Field(
        15, ge=1, description="How often the connector health sensor reads the Connect REST API."
    )
    restart_backoff_seconds: float = Field(
        10.0,
        gt=0,
        description="Wait before the first restart of a FAILED connector or task; doubles after "
        "each failed restart, up to restart_backoff_max_seconds.",
    )
    restart_backoff_max_seconds: float = Field(
        300.0, gt=0, description="Longest wait between two restarts."
    )
    restarts_before_alert: int = Field(
        3,
        ge=0,
        description="Restarts tried before a task that keeps failing raises an alert (0: alert "
        "at the first failure). Restarts go on with backoff after the alert.",
    )
    restart_recovery_seconds: float = Field(
        60.0,
        gt=0,
        description="A restarted connector counts as recovered once it has been RUNNING this "
        "long after the restart; failing before counts as a restart that did not help (a task "
        "killed by a record it cannot send runs for seconds after each restart).",
    )

    @field_validator("column_truncate_to_length_chars", "column_exclude_list", mode="after")
    @classmethod
    def _qualified_columns(cls, value: dict[str, int] | list[str]) -> dict[str, int] | list[str]:
        for name in value:
            if not _is_dotted_name(name, 3):
                raise ValueError(f"column {name!r} must be <db>.<table>.<column>")
        if isinstance(value, dict):
            for name, chars in value.items():
                if chars < 1:
                    raise ValueError(f"column {name!r}: truncate length {chars} must be >= 1")
        return value

    @property
    def port(self) -> int:
        port = urlparse(self.url).port
        return 8083 if port is None else port


class BronzeSettings(BaseModel):
    """The Faust worker that writes bronze Parquet files."""

    app_id: str = Field("binlake-bronze", description="Faust app id, also the consumer group.")
    flush_rows: int = Field(5000, ge=1, description="Rotate a bronze file after this many rows.")
    flush_seconds: float = Field(
        1.0, gt=0, description="Rotate a bronze file this long after its first row arrived."
    )
    flush_bytes: int = Field(
        64 * 1024 * 1024, ge=1, description="Rotate a bronze file after this many record bytes."
    )
    web_port: int = Field(
        0, ge=0, le=65535, description="Faust web port; 0 disables the web server."
    )
    stall_seconds: float = Field(
        20.0,
        gt=0,
        description="A partition whose records wait on the broker with none delivered for this "
        "long is stalled: the worker seeks back to the committed offsets, and restarts if that "
        "does not move the fetcher (streams/stall_watch.py).",
    )
    dead_letter_topic: str = Field(
        "", description="Topic bad records are copied to; empty means <topic prefix>.dead-letter."
    )
    max_message_bytes: int | None = Field(
        None,
        ge=1,
        description="Records larger than this are dead-lettered; None (the default) means "
        "`kafka.max_record_bytes`, the largest record the path carries.",
    )

    _unset_from_the_environment = field_validator("max_message_bytes", mode="before")(
        _none_from_text
    )


class DagsterSettings(BaseModel):
    """Dagster webserver, daemon and the timing of sensors and automation."""

    host: str = Field("127.0.0.1", description="Address the webserver binds.")
    port: int = Field(13000, ge=0, le=65535, description="Webserver port; 0 picks a free one.")
    sensor_interval_seconds: int = Field(
        2, ge=1, description="Minimum interval between bronze manifest sensor ticks."
    )
    sensor_max_files_per_tick: int = Field(
        10_000, ge=1, description="Bronze files the manifest sensor reports in one tick at most."
    )
    automation_interval_seconds: int = Field(
        3, ge=1, description="Minimum interval between automation condition evaluations."
    )
    partitions_start: str = Field(
        "",
        description="First hourly partition (YYYY-MM-DD-HH:MM, UTC) of bronze and gold. Empty "
        "(the default): where the lake's data starts (bronze's first hour; gold's oldest order), "
        "read when Dagster loads its definitions.",
    )
    retention_days: float = Field(
        7.0,
        gt=0,
        description="The maintenance job deletes Dagster runs (with their event logs) and "
        "sensor/schedule ticks older than this.",
    )
    maintenance_cron: str = Field(
        "17 3 * * *", description="When the maintenance job runs (cron, UTC)."
    )

    @field_validator("partitions_start")
    @classmethod
    def _partitions_start_is_an_hour(cls, value: str) -> str:
        if value:
            try:
                datetime.strptime(value, "%Y-%m-%d-%H:%M")
            except ValueError:
                raise ValueError(
                    f"partitions_start {value!r} is not YYYY-MM-DD-HH:MM (UTC), e.g. "
                    "2026-12-01-00:00; leave it empty to start where the lake's data starts"
                ) from None
        return value


class FreshnessSettings(BaseModel):
    """How far behind the newest source commit each layer may be (the stated SLOs)."""

    bronze_minutes: float = Field(1.0, gt=0, description="Bronze SLO, minutes.")
    silver_minutes: float = Field(2.0, gt=0, description="Silver SLO, minutes.")
    gold_minutes: float = Field(5.0, gt=0, description="Gold SLO, minutes.")


class SilverSettings(BaseModel):
    """How bronze changes become silver tables: PII masking and reconciliation."""

    pii_columns: list[str] = Field(
        [],
        description="Columns masked before silver: `<db>.<table>.<column>` or a bare column "
        "name (any table).",
    )
    pii_patterns: list[str] = Field(
        [r"(?i)e_?mail", r"(?i)phone"],
        description="Regular expressions; a column whose name matches one is masked.",
    )
    pii_mode: Literal["hash", "redact"] = Field(
        "hash",
        description="`hash`: keyed HMAC-SHA256 (hex), equal values stay equal so joins work; "
        "`redact`: replaced by null.",
    )
    pii_key: SecretStr = Field(
        SecretStr(LOCAL_PII_KEY),
        description="HMAC key of pii_mode=hash; set a secret of your own in production.",
    )
    reconcile_tolerance: float = Field(
        0.01,
        ge=0,
        description="Row-count difference (fraction of source rows) accepted while the source "
        "is busy; a quiet source must match exactly.",
    )
    reconcile_quiet_seconds: float = Field(
        30.0,
        ge=0,
        description="The source counts as quiet when the silver run saw no source commit for "
        "this long.",
    )
    history_tables: list[str] = Field(
        [],
        description="Tables that also get an SCD type 2 history silver table "
        "(`<db>.<table>`, each one of `tables`).",
    )
    auto_resync: bool = Field(
        False,
        description="When reconciliation finds a difference that persists while the source is "
        "quiet, or a schema change silver cannot apply exactly, start a resync of that table "
        "(Debezium incremental snapshot) without asking. Off: the check names the command.",
    )

    @field_validator("pii_patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"pii pattern {pattern!r} is not a regular expression: {exc}"
                ) from exc
        return value


class AlertSettings(BaseModel):
    """Where binlake's alerts go besides the Dagster UI: connector failures, failed runs and
    freshness SLO misses."""

    webhook_url: SecretStr = Field(
        SecretStr(""),
        description='Slack-compatible incoming webhook (POST of JSON `{"text": ...}`); empty '
        "sends none. A secret: webhook URLs carry their token.",
    )
    timeout_seconds: float = Field(5.0, gt=0, description="Timeout of one webhook POST.")
    repeat_minutes: float = Field(
        60.0,
        gt=0,
        description="An alert still true is sent again after this long (not on every tick).",
    )


class ResyncSettings(BaseModel):
    """Re-reading a table while streaming goes on (Debezium incremental snapshot)."""

    signal_table: str = Field(
        "binlake_signal",
        description="Debezium signal table, created in the first of mysql.databases; the "
        "connector user needs INSERT on it (Debezium writes its snapshot watermarks there).",
    )
    chunk_size: int = Field(
        1024,
        ge=1,
        description="Rows per incremental snapshot chunk (`incremental.snapshot.chunk.size`).",
    )

    @field_validator("signal_table")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"signal table {value!r} must match {_IDENTIFIER.pattern}")
        return value


class CompactorSettings(BaseModel):
    """Small-file compaction of closed bronze hours."""

    grace_minutes: float = Field(
        10.0,
        ge=0,
        description="An hour is closed once it ended this long ago and got no file for as long.",
    )
    target_file_bytes: int = Field(
        128 * 1024 * 1024, ge=1, description="Size compacted files are aimed at (input bytes)."
    )
    min_files: int = Field(
        2, ge=2, description="Fewest files of one hour and topic-partition worth compacting."
    )
    superseded_retention_hours: float = Field(
        24.0,
        ge=0,
        description="Files replaced by a compacted one are deleted this long after, so readers "
        "that listed them before the swap can finish.",
    )
    bronze_retention_days: float | None = Field(
        None,
        gt=0,
        description="Bronze files whose hour ended, and that were written, this many days ago "
        "are dropped from the manifest by the compaction pass (and deleted "
        "superseded_retention_hours later), once every lower offset of their partition is as "
        "old; silver keeps their changes, but a point-in-time rebuild of the table from bronze "
        "is refused from then on. None keeps bronze forever.",
    )
    sensor_interval_seconds: int = Field(
        300, ge=1, description="How often the compaction sensor looks for closed hours."
    )

    _unset_from_the_environment = field_validator("bronze_retention_days", mode="before")(
        _none_from_text
    )


class SqlSettings(BaseModel):
    """The local ClickHouse-compatible SQL endpoint over the lake's views (`binlake up`)."""

    host: str = Field("127.0.0.1", description="Address the endpoint binds; local only by default.")
    port: int = Field(18123, ge=0, le=65535, description="HTTP port; 0 picks a free one.")
    user: str = Field("binlake", min_length=1, description="The one user queries must give.")
    password: SecretStr = Field(
        SecretStr("binlake-local-sql"),
        description="That user's password (required, never empty); set your own beyond a laptop.",
    )
    refresh_seconds: float = Field(
        5.0, gt=0, description="How often the endpoint looks for new lake tables to publish."
    )

    @field_validator("password")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("sql.password must not be empty: the endpoint always asks for one")
        return value


# Where the lake may live: a local path (file:// too), or an object store that pyarrow, delta-rs
# and obstore all open: S3 (and S3-compatible servers), GCS, Azure Blob / ADLS Gen2.
LOCAL_SCHEMES = ("", "file")
OBJECT_STORE_SCHEMES = ("s3", "gs", "az", "abfs", "abfss")

# Each StorageSettings field left unset is taken from the first of these variables that is set,
# the names every AWS SDK and object_store read, so an existing AWS setup needs no BINLAKE_*.
STANDARD_STORAGE_ENV = {
    "endpoint_url": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "allow_http": ("AWS_ALLOW_HTTP",),
    "access_key_id": ("AWS_ACCESS_KEY_ID",),
    "secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "session_token": ("AWS_SESSION_TOKEN",),
    "profile": ("AWS_PROFILE",),
}


class StorageSettings(BaseModel):
    """How to reach an object-store lake (`storage_url` says where it is): the S3 endpoint,
    region and credentials. Every field left unset comes from the standard AWS variables
    (AWS_ENDPOINT_URL, AWS_REGION / AWS_DEFAULT_REGION, AWS_ALLOW_HTTP, AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE); with no keys at all the clients use
    their own default chain (profile files, instance or pod roles). Azure (AZURE_STORAGE_*,
    AZURE_CLIENT_*) and GCS (GOOGLE_APPLICATION_CREDENTIALS, GOOGLE_SERVICE_ACCOUNT*) variables
    are passed through to the clients as they are (binlake.storage). Secrets never print."""

    endpoint_url: str = Field(
        "",
        description="S3 endpoint of an S3-compatible server (http://127.0.0.1:8333); empty: "
        "AWS's own.",
    )
    region: str = Field("", description="S3 region; empty: the clients' default (us-east-1).")
    allow_http: bool | None = Field(
        None,
        description="Allow plain-HTTP endpoints; None: true exactly when endpoint_url is http://.",
    )
    access_key_id: SecretStr = Field(SecretStr(""), description="S3 access key id.")
    secret_access_key: SecretStr = Field(SecretStr(""), description="S3 secret access key.")
    session_token: SecretStr = Field(SecretStr(""), description="S3 session token (STS).")
    profile: str = Field("", description="AWS profile in ~/.aws/config to take credentials from.")

    @model_validator(mode="before")
    @classmethod
    def _unset_from_standard_environment(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, variables in STANDARD_STORAGE_ENV.items():
            if _none_from_text(data.get(name)) is not None:
                continue
            value = next((os.environ[v] for v in variables if os.environ.get(v)), None)
            if value is not None:
                data[name] = value
        return data

    _unset_allow_http = field_validator("allow_http", mode="before")(_none_from_text)

    @field_validator("endpoint_url")
    @classmethod
    def _http_endpoint(cls, value: str) -> str:
        if not value:
            return value
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(
                f"storage.endpoint_url {value!r} must be http(s)://host[:port] "
                "(e.g. http://127.0.0.1:8333)"
            )
        if parsed.username or parsed.password:
            raise ValueError(
                "storage.endpoint_url must not carry credentials; set storage.access_key_id and "
                "storage.secret_access_key (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _http_only_when_allowed(self) -> StorageSettings:
        if self.allow_http is False and self.endpoint_url.startswith("http://"):
            raise ValueError(
                f"storage.endpoint_url {self.endpoint_url} is plain HTTP but "
                "storage.allow_http is false"
            )
        return self

    @property
    def http_allowed(self) -> bool:
        if self.allow_http is not None:
            return self.allow_http
        return self.endpoint_url.startswith("http://")


class LocalStackSettings(BaseModel):
    """Binaries and caches used only by `binlake up` (the local stand-in for production)."""

    jvm_cache_dir: Path = Field(
        Path("~/.cache/binlake/jvm").expanduser(),
        description="Where `binlake setup` resolves Kafka, Kafka Connect, the Debezium plugins and "
        "Apicurio Registry with Maven (deploy/jvm/pom.xml); shared by every state directory.",
    )
    maven: str = Field("mvn", description="Maven executable `binlake setup` runs.")
    java: str = Field("java", description="Java 17+ executable for the broker and Kafka Connect.")
    registry_java: str = Field(
        "",
        description="Java 21+ executable for Apicurio Registry; empty: the first Java 21+ of "
        "`java`, $JAVA_HOME and /usr/lib/jvm/*.",
    )
    java_heap: str = Field("1g", description="Kafka Connect -Xmx.")
    broker_heap: str = Field("512m", description="Kafka broker -Xmx.")
    mariadbd: str = Field("mariadbd", description="MariaDB server binary standing in for MySQL.")
    mariadb_install_db: str = Field(
        "mariadb-install-db", description="MariaDB datadir initialiser."
    )
    startup_timeout_seconds: float = Field(120.0, gt=0, description="Per-component start timeout.")
    object_store: bool = Field(
        False,
        description="Keep the lake on a local S3 server (SeaweedFS `weed mini`, from the dev or "
        "s3-server extra) under <state_dir>/s3 instead of <state_dir>/lake (`binlake up "
        "--object-store`); storage_url must then be left unset.",
    )
    s3_port: int = Field(
        0,
        ge=0,
        le=22767,
        description="S3 port of the local S3 server (its gRPC port is 10000 above it); 0 picks "
        "a free one at `binlake up`.",
    )
    weed: str = Field("weed", description="SeaweedFS executable for the local S3 server.")


class Settings(BaseSettings):
    """Everything binlake needs to know, validated once when loaded."""

    model_config = SettingsConfigDict(
        env_prefix="BINLAKE_",
        env_nested_delimiter="__",
        extra="forbid",
        # A rejected value may be a secret (a password, a URL with a key in it): errors name the
        # field and what is wrong, never echo the input.
        hide_input_in_errors=True,
    )

    environment: Literal["local", "prod"] = Field(
        "local", description="`local` runs the stack under `binlake up`; `prod` is compose/k8s."
    )
    state_dir: Path = Field(
        Path(".binlake"), description="Local stack state: datadirs, logs, pid files, DAGSTER_HOME."
    )
    storage_url: str = Field(
        "",
        description="Root of the lake (bronze, manifest, silver, gold): a path, file://, or an "
        "object-store URL s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or "
        "abfss://container@account.dfs.core.windows.net/prefix (how to reach it: `storage`). "
        "Empty means <state_dir>/lake.",
    )
    storage: StorageSettings = Field(default_factory=StorageSettings)
    tables: list[str] = Field(
        ["shop.customers", "shop.products", "shop.orders", "shop.order_items"],
        description="Captured tables as <db>.<table>; each gets bronze, silver and a check.",
    )
    mysql: MySQLSettings = Field(default_factory=MySQLSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    connect: ConnectSettings = Field(default_factory=ConnectSettings)
    bronze: BronzeSettings = Field(default_factory=BronzeSettings)
    dagster: DagsterSettings = Field(default_factory=DagsterSettings)
    silver: SilverSettings = Field(default_factory=SilverSettings)
    freshness: FreshnessSettings = Field(default_factory=FreshnessSettings)
    compactor: CompactorSettings = Field(default_factory=CompactorSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    resync: ResyncSettings = Field(default_factory=ResyncSettings)
    sql: SqlSettings = Field(default_factory=SqlSettings)
    local: LocalStackSettings = Field(default_factory=LocalStackSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = os.environ.get(CONFIG_FILE_ENV)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file:
            sources.append(_toml_source(settings_cls, config_file))
        return tuple(sources)

    @field_validator("storage_url")
    @classmethod
    def _supported_storage_url(cls, value: str) -> str:
        if not value:
            return value
        parsed = urlparse(value)
        scheme = parsed.scheme.lower()
        shown = without_credentials(value)
        # A one-letter "scheme" is a Windows drive (C:/lake), a path.
        if len(scheme) == 1 or scheme in LOCAL_SCHEMES:
            return value
        if scheme not in OBJECT_STORE_SCHEMES:
            raise ValueError(
                f"storage_url {shown!r}: unsupported scheme {parsed.scheme!r}; use a local path, "
                "file://, s3://, gs://, az:// or abfss://"
            )
        if not parsed.hostname:
            raise ValueError(f"storage_url {shown!r} names no bucket or container")
        if parsed.password or (parsed.username and scheme not in ("abfs", "abfss")):
            raise ValueError(
                f"storage_url for {parsed.hostname} must not carry credentials; use the "
                "`storage` settings or the standard AWS_* / AZURE_* / GOOGLE_* variables"
            )
        if parsed.query or parsed.fragment:
            raise ValueError(f"storage_url {shown!r}: no query or fragment allowed")
        return value.rstrip("/")

    @field_validator("tables")
    @classmethod
    def _qualified_tables(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _is_dotted_name(name, 2):
                raise ValueError(f"table {name!r} must be <db>.<table> with plain identifiers")
        return value

    @model_validator(mode="after")
    def _own_pii_key_in_prod(self) -> Settings:
        if self.environment == "prod" and self.silver.pii_key.get_secret_value() == LOCAL_PII_KEY:
            raise ValueError(
                "silver.pii_key is the local default; set BINLAKE_SILVER__PII_KEY in production "
                "(with the default, anyone can check a digest against guessed values)"
            )
        return self

    @model_validator(mode="after")
    def _registry_for_avro(self) -> Settings:
        if self.kafka.value_format == "avro" and not self.kafka.schema_registry_url:
            raise ValueError("kafka.value_format=avro needs kafka.schema_registry_url")
        return self

    @property
    def bronze_max_message_bytes(self) -> int:
        """Records larger than this are dead-lettered by the bronze worker."""
        return self.bronze.max_message_bytes or self.kafka.max_record_bytes

    @model_validator(mode="after")
    def _column_options_name_captured_tables(self) -> Settings:
        named = [*self.connect.column_truncate_to_length_chars, *self.connect.column_exclude_list]
        unknown = [c for c in named if c.rsplit(".", 1)[0] not in self.tables]
        if unknown:
            raise ValueError(f"connect column options name columns of uncaptured tables: {unknown}")
        return self

    @property
    def dead_letter_topic(self) -> str:
        return self.bronze.dead_letter_topic or f"{self.kafka.topic_prefix}.dead-letter"

    @model_validator(mode="after")
    def _tables_in_captured_databases(self) -> Settings:
        for name in self.tables:
            if name.split(".")[0] not in self.mysql.databases:
                raise ValueError(
                    f"table {name!r} is outside mysql.databases={self.mysql.databases}"
                )
        return self

    @model_validator(mode="after")
    def _history_tables_are_captured(self) -> Settings:
        unknown = [name for name in self.silver.history_tables if name not in self.tables]
        if unknown:
            raise ValueError(
                f"silver.history_tables {unknown} are not among the captured tables={self.tables}"
            )
        return self

    @property
    def lake_url(self) -> str:
        """The lake root as a URL or absolute local path; the only place storage is located."""
        if self.storage_url:
            return self.storage_url
        return str((self.state_dir / "lake").resolve())

    def topic_for(self, table: str) -> str:
        """Kafka topic Debezium writes `<db>.<table>` changes to."""
        return f"{self.kafka.topic_prefix}.{table}"

    def env(self) -> dict[str, str]:
        """These settings as BINLAKE_* environment variables, for child processes.

        Secrets are included because children need them; never log the result.
        """
        env: dict[str, str] = {
            "BINLAKE_ENVIRONMENT": self.environment,
            "BINLAKE_STATE_DIR": str(self.state_dir.resolve()),
            "BINLAKE_STORAGE_URL": self.lake_url,
            "BINLAKE_TABLES": _json_list(self.tables),
        }
        for group in (
            "mysql",
            "kafka",
            "connect",
            "bronze",
            "dagster",
            "silver",
            "freshness",
            "compactor",
            "alerts",
            "resync",
            "sql",
            "local",
            "storage",
        ):
            model: BaseModel = getattr(self, group)
            for name, value in model.model_dump().items():
                key = f"BINLAKE_{group.upper()}__{name.upper()}"
                if isinstance(value, SecretStr):
                    env[key] = value.get_secret_value()
                elif isinstance(value, list | dict):
                    env[key] = json.dumps(value)
                else:
                    env[key] = str(value)
        return env


def _json_list(values: list[str]) -> str:
    return json.dumps(values)


def _toml_source(settings_cls: type[BaseSettings], config_file: str) -> TomlConfigSettingsSource:
    """The settings file `BINLAKE_CONFIG` names; InvalidSettings, one line, if it cannot be read."""
    if not Path(config_file).is_file():
        raise InvalidSettings([f"{CONFIG_FILE_ENV}={config_file}: no such file"])
    try:
        return TomlConfigSettingsSource(settings_cls, toml_file=config_file)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidSettings(
            [f"{CONFIG_FILE_ENV}={config_file}: cannot be read as TOML: {exc}"]
        ) from exc


def load_settings(**overrides: object) -> Settings:
    """Load and validate settings.

    InvalidSettings (one line per problem) for a `BINLAKE_*` variable that is no setting, a JSON
    setting that is not JSON, or a settings file that cannot be read; pydantic.ValidationError
    naming each bad value (`binlake.settings_errors.validation_problems` says it in one line each).
    """
    problems = environment_problems(Settings, os.environ)
    if problems:
        raise InvalidSettings(problems)
    return Settings(**overrides)  # type: ignore[arg-type]

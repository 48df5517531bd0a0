"""Where the lake lives: one root URL, resolved once, and durable writes under it.

Bronze files are written to a temporary name and renamed into place, so a reader sees a whole
file or none. On a local filesystem the data and the directory are fsynced before the rename is
trusted, and so is the parent of every directory created on the way, so a power loss cannot drop
the directory entry of a durable file; object stores make a completed PUT durable and atomic on
their own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import ParseResult, urlparse

import pyarrow.fs as pafs

from binlake import failpoints
from binlake.errors import ConfigurationError, StorageUnavailableError
from binlake.settings import Settings, StorageSettings

# Credentials of Azure and GCS are taken from the environment as they are: object_store
# (delta-rs, obstore) reads these names, pyarrow's Azure/GCS filesystems the same sources.
AZURE_ENV = (
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CLIENT_ID",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_STORAGE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
)
GCS_ENV = (
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_SERVICE_ACCOUNT",
    "GOOGLE_SERVICE_ACCOUNT_PATH",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
)
# object_store's own names that obstore takes apart from `config`, or not at all.
_OBSTORE_CLIENT_OPTIONS = {"AWS_ALLOW_HTTP": "allow_http"}
_OBSTORE_UNKNOWN = frozenset({"AWS_PROFILE"})


def object_store_options(lake_url: str, storage: StorageSettings) -> dict[str, str]:
    """The options object_store clients (delta-rs, obstore, polars' Delta and Parquet readers)
    open `lake_url` with: S3's from `storage`, Azure's and GCS's from the environment; empty
    for a local lake. Never AWS_S3_ALLOW_UNSAFE_RENAME: delta-rs 1.x commits to S3 with
    conditional puts."""
    scheme = urlparse(lake_url).scheme.lower()
    if scheme == "s3":
        options = {
            "AWS_ENDPOINT_URL": storage.endpoint_url,
            "AWS_REGION": storage.region,
            "AWS_ACCESS_KEY_ID": storage.access_key_id.get_secret_value(),
            "AWS_SECRET_ACCESS_KEY": storage.secret_access_key.get_secret_value(),
            "AWS_SESSION_TOKEN": storage.session_token.get_secret_value(),
            "AWS_PROFILE": storage.profile,
            "AWS_ALLOW_HTTP": "true" if storage.http_allowed else "",
        }
        return {key: value for key, value in options.items() if value}
    names = {"gs": GCS_ENV, "az": AZURE_ENV, "abfs": AZURE_ENV, "abfss": AZURE_ENV}.get(scheme, ())
    return {name: os.environ[name] for name in names if os.environ.get(name)}


@dataclass(frozen=True)
class LakeStorage:
    """The lake root: a pyarrow filesystem plus a base path inside it, and the URL and options
    (endpoint, region, credentials) that object-store clients other than pyarrow's (obstore,
    deltalake) open the same root with."""

    filesystem: pafs.FileSystem
    base: str
    url: str = ""
    # Credentials among them: kept out of the repr.
    options: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeStorage:
        """The lake of `settings`: `lake_url` opened with `storage`'s endpoint, region and
        credentials (`object_store_options`)."""
        return cls.from_url(
            settings.lake_url, object_store_options(settings.lake_url, settings.storage)
        )

    @classmethod
    def from_url(cls, url: str, options: Mapping[str, str] | None = None) -> LakeStorage:
        """The lake at `url` (a path, file://, s3://, gs://, az://, abfs(s)://), opened with
        object_store `options` (AWS_ENDPOINT_URL, AWS_REGION, AWS_ALLOW_HTTP, keys...)."""
        parsed = urlparse(url)
        scheme = parsed.scheme.lower()
        if scheme in ("", "file") or len(scheme) == 1:
            path = Path(parsed.path if scheme == "file" else url).expanduser().resolve()
            return cls(pafs.LocalFileSystem(), str(path), url=str(path))
        options = {key.upper(): value for key, value in (options or {}).items()}
        if scheme == "s3":
            filesystem: pafs.FileSystem = _s3_filesystem(options)
            base = f"{parsed.netloc}{parsed.path}"
        elif scheme == "gs":
            filesystem, base = pafs.GcsFileSystem(), f"{parsed.netloc}{parsed.path}"
        elif scheme in ("az", "abfs", "abfss"):
            filesystem, base = _azure_filesystem(parsed, options)
        else:
            raise ConfigurationError(
                f"lake URL scheme {parsed.scheme!r} is not supported; use a local path, file://, "
                "s3://, gs://, az:// or abfss://"
            )
        return cls(
            filesystem,
            base.rstrip("/"),
            url=url.rstrip("/"),
            options=tuple(sorted(options.items())),
        )

    @property
    def storage_options(self) -> dict[str, str]:
        """`options` as the dict deltalake, polars and obstore take (`storage_options=`)."""
        return dict(self.options)

    def obstore_options(self) -> tuple[dict[str, str], dict[str, str]]:
        """`options` as obstore's `from_url(url, config=..., client_options=...)` takes them:
        allow-HTTP is a client option there, and a profile is not understood (obstore finds
        credentials through the standard variables instead)."""
        config: dict[str, str] = {}
        client: dict[str, str] = {}
        for key, value in self.options:
            if key in _OBSTORE_CLIENT_OPTIONS:
                client[_OBSTORE_CLIENT_OPTIONS[key]] = value
            elif key not in _OBSTORE_UNKNOWN:
                config[key] = value
        return config, client

    def uri(self, relative: str) -> str:
        """The URL (object store) or absolute path (local) of `relative` under the lake."""
        return f"{self.url}/{relative}" if relative else self.url

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def full_path(self, relative: str) -> str:
        return f"{self.base}/{relative}" if relative else self.base

    def exists(self, relative: str) -> bool:
        info = self.filesystem.get_file_info(self.full_path(relative))
        return info.type != pafs.FileType.NotFound

    def read_bytes(self, relative: str) -> bytes:
        with self.filesystem.open_input_stream(self.full_path(relative)) as stream:
            return stream.read()

    def write_atomic(self, relative: str, data: bytes) -> None:
        """Write `data` at `relative` so that readers see all of it or nothing.

        Rewriting an existing name replaces it whole; the bronze writer relies on this to make a
        retried flush produce the same file under the same name.
        """
        target = self.full_path(relative)
        try:
            if not self.is_local:
                failpoints.failpoint(failpoints.BEFORE_RENAME)
                with self.filesystem.open_output_stream(target) as out:
                    out.write(data)
                failpoints.failpoint(failpoints.AFTER_RENAME)
                return
            directory = os.path.dirname(target)
            makedirs_durable(directory)
            temp = os.path.join(directory, f".{os.path.basename(target)}.{uuid.uuid4().hex}.tmp")
            with open(temp, "wb") as out:
                if failpoints.armed(failpoints.MID_WRITE):
                    half = len(data) // 2
                    out.write(data[:half])
                    out.flush()
                    failpoints.failpoint(failpoints.MID_WRITE)
                    out.write(data[half:])
                else:
                    out.write(data)
                out.flush()
                os.fsync(out.fileno())
            failpoints.failpoint(failpoints.BEFORE_RENAME)
            os.replace(temp, target)
            fsync_directory(directory)
            failpoints.failpoint(failpoints.AFTER_RENAME)
        except OSError as exc:
            raise StorageUnavailableError(f"cannot write {target}: {exc}") from exc

    def read_from(self, relative: str, byte_offset: int) -> bytes:
        """Bytes of `relative` from `byte_offset` to its current end (b'' if it does not exist)."""
        target = self.full_path(relative)
        if not self.is_local:
            data = self.read_bytes(relative) if self.exists(relative) else b""
            return data[byte_offset:]
        try:
            with open(target, "rb") as stream:
                stream.seek(byte_offset)
                return stream.read()
        except FileNotFoundError:
            return b""


def _s3_filesystem(options: Mapping[str, str]) -> pafs.S3FileSystem:
    """pyarrow's S3 client with the same endpoint, region and keys as the object_store
    options. Without keys it uses the AWS SDK's default chain (AWS_PROFILE, profile files,
    instance roles); a profile given only as a binlake setting reaches object_store alone."""
    endpoint = options.get("AWS_ENDPOINT_URL", "")
    kwargs: dict[str, object] = {}
    if endpoint:
        parsed = urlparse(endpoint)
        if parsed.scheme == "http" and options.get("AWS_ALLOW_HTTP", "").lower() != "true":
            raise ConfigurationError(
                f"S3 endpoint {endpoint} is plain HTTP; set AWS_ALLOW_HTTP=true "
                "(storage.allow_http) to use it"
            )
        kwargs["endpoint_override"] = parsed.netloc
        kwargs["scheme"] = parsed.scheme
    if options.get("AWS_REGION"):
        kwargs["region"] = options["AWS_REGION"]
    if options.get("AWS_ACCESS_KEY_ID"):
        kwargs["access_key"] = options["AWS_ACCESS_KEY_ID"]
        kwargs["secret_key"] = options.get("AWS_SECRET_ACCESS_KEY", "")
        if options.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = options["AWS_SESSION_TOKEN"]
    return pafs.S3FileSystem(**kwargs)


def _azure_filesystem(
    parsed: ParseResult, options: Mapping[str, str]
) -> tuple[pafs.AzureFileSystem, str]:
    """az://container/prefix (account from AZURE_STORAGE_ACCOUNT_NAME) or
    abfs[s]://container@account.dfs.core.windows.net/prefix; base is container/prefix."""
    if "@" in parsed.netloc:
        container, host = parsed.netloc.split("@", 1)
        account = host.split(".", 1)[0]
    else:
        container, account = parsed.netloc, options.get("AZURE_STORAGE_ACCOUNT_NAME", "")
    if not account:
        raise ConfigurationError(
            f"{parsed.scheme}://{container}: no storage account; set AZURE_STORAGE_ACCOUNT_NAME "
            "or use abfss://<container>@<account>.dfs.core.windows.net/<prefix>"
        )
    kwargs = {
        "account_key": options.get("AZURE_STORAGE_ACCOUNT_KEY"),
        "sas_token": options.get("AZURE_STORAGE_SAS_TOKEN"),
        "client_id": options.get("AZURE_STORAGE_CLIENT_ID") or options.get("AZURE_CLIENT_ID"),
        "client_secret": options.get("AZURE_STORAGE_CLIENT_SECRET")
        or options.get("AZURE_CLIENT_SECRET"),
        "tenant_id": options.get("AZURE_STORAGE_TENANT_ID") or options.get("AZURE_TENANT_ID"),
    }
    filesystem = pafs.AzureFileSystem(
        account, **{key: value for key, value in kwargs.items() if value}
    )
    return filesystem, f"{container}{parsed.path}"


def makedirs_durable(path: str) -> None:
    """Create `path` and its missing parents one by one, fsyncing each new directory's parent.

    Only directories that do not exist yet are created, so the walk stops at the first existing
    ancestor (the lake base once the lake exists).
    """
    missing: list[str] = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
            # created concurrently by another writer: fsync its entry anyway, it is cheap
        fsync_directory(os.path.dirname(directory))


def fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Where the lake lives: one root URL, resolved once, and durable writes under it.

Bronze files are written to a temporary name and renamed into place, so a reader sees a whole
file or none. On a local filesystem the data and the directory are fsynced before the rename is
trusted, and so is the parent of every directory created on the way, so a power loss cannot drop
the directory entry of a durable file; object stores make a completed PUT durable and atomic on
their own.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from binlake import failpoints
from binlake.errors import StorageUnavailableError


@dataclass(frozen=True)
class LakeStorage:
    """The lake root: a pyarrow filesystem plus a base path inside it, and the URL and options
    (endpoint, region, credentials) that object-store clients other than pyarrow's (obstore,
    deltalake) open the same root with."""

    filesystem: pafs.FileSystem
    base: str
    url: str = ""
    options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_url(cls, url: str) -> LakeStorage:
        parsed = urlparse(url)
        if parsed.scheme in ("", "file"):
            path = Path(parsed.path if parsed.scheme else url).expanduser().resolve()
            return cls(pafs.LocalFileSystem(), str(path), url=str(path))
        filesystem, base = pafs.FileSystem.from_uri(url)
        return cls(filesystem, base.rstrip("/"), url=url)

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
            _makedirs_durable(directory)
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
            _fsync_directory(directory)
            failpoints.failpoint(failpoints.AFTER_RENAME)
        except OSError as exc:
            raise StorageUnavailableError(f"cannot write {target}: {exc}") from exc

    def append_line(self, relative: str, line: str) -> None:
        """Append one newline-terminated line durably (local filesystem, single host).

        A single write() of a short line to a file opened with O_APPEND is not interleaved with
        other appenders on the same host, so concurrent writers never corrupt each other's lines.
        O_APPEND is not atomic across NFS clients: the file must not be appended to from several
        hosts. A short write is continued until the whole line is written. If the file does not
        end with a newline (an earlier append cut short by a crash or a full disk), a newline is
        written first so the new line is never glued onto that fragment; readers skip fragments.
        """
        if not self.is_local:
            raise NotImplementedError("append-only manifest logs need a local filesystem")
        target = self.full_path(relative)
        data = (line.rstrip("\n") + "\n").encode()
        try:
            _makedirs_durable(os.path.dirname(target))
            flags = os.O_RDWR | os.O_APPEND
            try:
                fd = os.open(target, flags | os.O_CREAT | os.O_EXCL, 0o644)
                created = True
            except FileExistsError:
                fd = os.open(target, flags)
                created = False
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data
                _write_all(fd, data, target)
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_directory(os.path.dirname(target))
        except OSError as exc:
            raise StorageUnavailableError(f"cannot append to {target}: {exc}") from exc

    @contextlib.contextmanager
    def exclusive_lock(self, relative: str) -> Iterator[None]:
        """Hold an exclusive lock (flock) on the file `relative`, created if missing.

        Local filesystem, one host (like `append_line`). The lock goes when the block ends or
        the process dies, so a crashed holder never blocks the others.
        """
        if not self.is_local:
            raise NotImplementedError("lake-wide locks need a local filesystem")
        target = self.full_path(relative)
        try:
            _makedirs_durable(os.path.dirname(target))
            fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageUnavailableError(f"cannot lock {target}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

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


def _write_all(fd: int, data: bytes, target: str) -> None:
    """os.write until every byte of `data` is written; a write that makes no progress fails."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:
            raise StorageUnavailableError(
                f"cannot append to {target}: write made no progress "
                f"({len(data) - len(view)} of {len(data)} bytes written)"
            )
        view = view[written:]


def _makedirs_durable(path: str) -> None:
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
        _fsync_directory(os.path.dirname(directory))


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

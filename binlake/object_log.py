"""Create-once objects under the lake root: the primitive a lock-free log is built on.

`create(name, data)` makes an object exist with `data` only if no object has that name yet, and
tells whether this call did it: of several writers creating the same name, exactly one wins.
On a local filesystem the data goes to a hidden temporary file, is fsynced, and is hard-linked
to its name (`os.link` fails if the name exists), then the directory is fsynced; on S3, GCS and
Azure it is one PUT with `If-None-Match: *` (obstore's ``mode="create"``), never multipart
(conditional multipart completion is not safe on every S3 server).

Names are relative to the lake root, like `LakeStorage` paths.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import Protocol

import obstore
from obstore.exceptions import AlreadyExistsError
from obstore.store import from_url

from binlake.errors import StorageUnavailableError
from binlake.storage import LakeStorage, fsync_directory, makedirs_durable


class ObjectLog(Protocol):
    """Conditional create, read, overwrite and ordered listing of small objects."""

    def create(self, name: str, data: bytes) -> bool:
        """Write `data` at `name` if nothing is there; False if an object already was."""
        ...

    def read(self, name: str) -> bytes | None:
        """The object's bytes, or None if there is none."""
        ...

    def put(self, name: str, data: bytes) -> None:
        """Write `data` at `name`, replacing what was there (derived data only)."""
        ...

    def names_after(self, directory: str, after: str = "") -> list[str]:
        """Names of the objects directly in `directory` sorting after `after`, sorted."""
        ...

    def link(self, source: str, target: str) -> bool:
        """Give the object `source` the name `target` too if `target` is free; False if it is
        taken, or if the store has no cheap conditional copy (object stores)."""
        ...


def object_log(storage: LakeStorage) -> ObjectLog:
    """The object log of `storage`'s lake root: local files, or obstore for an object store."""
    if storage.is_local:
        return LocalObjectLog(storage.base)
    config, client = storage.obstore_options()
    return StoreObjectLog(from_url(storage.url, config=config, client_options=client))


class LocalObjectLog:
    """`ObjectLog` on a local (POSIX) filesystem; fsyncs so a created object survives power loss."""

    def __init__(self, root: str):
        self.root = root

    def _path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def create(self, name: str, data: bytes) -> bool:
        target = self._path(name)
        directory = os.path.dirname(target)
        temp = os.path.join(directory, f".{os.path.basename(target)}.{uuid.uuid4().hex}.tmp")
        try:
            makedirs_durable(directory)
            with open(temp, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(temp, target)
            except FileExistsError:
                return False
            fsync_directory(directory)
            return True
        except OSError as exc:
            raise StorageUnavailableError(f"cannot create {target}: {exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def read(self, name: str) -> bytes | None:
        try:
            with open(self._path(name), "rb") as stream:
                return stream.read()
        except FileNotFoundError:
            return None

    def put(self, name: str, data: bytes) -> None:
        target = self._path(name)
        directory = os.path.dirname(target)
        temp = os.path.join(directory, f".{os.path.basename(target)}.{uuid.uuid4().hex}.tmp")
        try:
            os.makedirs(directory, exist_ok=True)
            with open(temp, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise StorageUnavailableError(f"cannot write {target}: {exc}") from exc

    def names_after(self, directory: str, after: str = "") -> list[str]:
        try:
            with os.scandir(self._path(directory)) as found:
                names = [e.name for e in found if e.is_file() and e.name > after]
        except FileNotFoundError:
            return []
        return sorted(n for n in names if not n.startswith("."))

    def link(self, source: str, target: str) -> bool:
        try:
            os.link(self._path(source), self._path(target))
        except FileExistsError:
            return False
        except OSError as exc:
            raise StorageUnavailableError(f"cannot link {source} to {target}: {exc}") from exc
        fsync_directory(os.path.dirname(self._path(target)))
        return True


class StoreObjectLog:
    """`ObjectLog` on an obstore store (S3, GCS, Azure, memory)."""

    def __init__(self, store: obstore.store.ObjectStore):
        self.store = store

    def create(self, name: str, data: bytes) -> bool:
        try:
            obstore.put(self.store, name, data, mode="create", use_multipart=False)
        except AlreadyExistsError:
            return False
        except (OSError, obstore.exceptions.BaseError) as exc:
            raise StorageUnavailableError(f"cannot create {name}: {exc}") from exc
        return True

    def read(self, name: str) -> bytes | None:
        try:
            return bytes(obstore.get(self.store, name).bytes())
        except FileNotFoundError:
            return None
        except (OSError, obstore.exceptions.BaseError) as exc:
            raise StorageUnavailableError(f"cannot read {name}: {exc}") from exc

    def put(self, name: str, data: bytes) -> None:
        try:
            obstore.put(self.store, name, data, use_multipart=False)
        except (OSError, obstore.exceptions.BaseError) as exc:
            raise StorageUnavailableError(f"cannot write {name}: {exc}") from exc

    def names_after(self, directory: str, after: str = "") -> list[str]:
        prefix = directory.rstrip("/") + "/"
        offset = prefix + after if after else None
        try:
            chunks = obstore.list(self.store, prefix, offset=offset, chunk_size=1000)
            paths = [meta["path"] for chunk in chunks for meta in chunk]
        except (OSError, obstore.exceptions.BaseError) as exc:
            raise StorageUnavailableError(f"cannot list {directory}: {exc}") from exc
        names = (p[len(prefix) :] for p in paths if p.startswith(prefix))
        return sorted(n for n in names if "/" not in n and n > after)

    def link(self, source: str, target: str) -> bool:
        # S3 has no portable copy-if-absent: the caller keeps the object under `source`.
        return False

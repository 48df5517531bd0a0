"""What every Delta table of the lake (silver, gold) shares: where it is and how it opens."""

from __future__ import annotations

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError


class DeltaTableBase:
    """A Delta table at `uri` (a local path or an object-store URL), opened with the lake's
    object-store options; it may not exist yet (no commit so far)."""

    def __init__(self, uri: str, storage_options: dict[str, str] | None = None) -> None:
        self.uri = uri
        self.storage_options = storage_options or None

    def _open(self, version: int | None = None) -> DeltaTable | None:
        """The table as of `version` (latest when None); None before its first commit."""
        try:
            table = DeltaTable(self.uri, storage_options=self.storage_options)
        except TableNotFoundError:
            return None
        if version is not None:
            table.load_as_version(version)
        return table

    def exists(self) -> bool:
        return self._open() is not None

    def version(self) -> int | None:
        table = self._open()
        return None if table is None else table.version()

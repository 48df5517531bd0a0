"""Where each silver Delta table of a lake lives: current state, history and rebuilds.

<lake>/silver/<db>/<table>                       current state (MERGE, time travel)
<lake>/silver/<db>/<table>__history              SCD type 2 history
<lake>/rebuilds/silver/<db>/<table>/<label>      a point-in-time rebuild from bronze
"""

from __future__ import annotations

from collections.abc import Mapping

from binlake.silver.delta_table import SilverDeltaTable
from binlake.silver.history import SilverHistoryTable
from binlake.storage import LakeStorage


def silver_table_uri(lake_url: str, table: str) -> str:
    """Where the Delta table of silver `<db>.<table>` lives: ``<lake>/silver/<db>/<table>``."""
    db, name = table.split(".")
    return f"{lake_url.rstrip('/')}/silver/{db}/{name}"


class SilverTables:
    """The silver Delta tables under one lake root, each opened with the lake's object-store
    options (endpoint, region, credentials; none for a local lake)."""

    def __init__(self, lake_url: str, storage_options: Mapping[str, str] | None = None) -> None:
        self.lake_url = lake_url
        self.storage_options = dict(storage_options) if storage_options else None

    @classmethod
    def of(cls, storage: LakeStorage) -> SilverTables:
        return cls(storage.url, storage.storage_options)

    def table(self, table: str) -> SilverDeltaTable:
        return SilverDeltaTable(silver_table_uri(self.lake_url, table), self.storage_options)

    def rebuild(self, table: str, label: str) -> SilverDeltaTable:
        """A point-in-time rebuild of `<db>.<table>`, at
        ``<lake>/rebuilds/silver/<db>/<table>/<label>``."""
        db, name = table.split(".")
        return SilverDeltaTable(
            f"{self.lake_url.rstrip('/')}/rebuilds/silver/{db}/{name}/{label}", self.storage_options
        )

    def history(self, table: str) -> SilverHistoryTable:
        """The SCD type 2 history of `<db>.<table>`: ``<lake>/silver/<db>/<table>__history``."""
        return SilverHistoryTable(
            f"{silver_table_uri(self.lake_url, table)}__history", self.storage_options
        )

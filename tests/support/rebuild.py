"""A silver rebuild (`binlake.silver.rebuild`) over a test's lake, wired as `binlake rebuild`
wires it: the lake's bronze, its silver tables and the PII policy of its settings."""

from __future__ import annotations

from binlake.bronze.reader import BronzeReader
from binlake.settings import Settings
from binlake.silver.pii import PiiPolicy
from binlake.silver.rebuild import AsOf, Rebuilt, rebuild_silver
from binlake.silver.tables import SilverTables


def rebuild(settings: Settings, table: str, as_of: AsOf) -> Rebuilt:
    """Rebuild silver `table` as of `as_of` from the bronze of `settings`' lake."""
    return rebuild_silver(
        BronzeReader.from_settings(settings),
        SilverTables(settings.lake_url),
        PiiPolicy.from_settings(settings.silver),
        table,
        as_of,
    )

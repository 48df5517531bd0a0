"""One gold table stored as a Delta Lake table, its hours replaced whole by each run.

A gold run recomputes a range of hours; ``replace_hours`` writes them in one Delta commit that
removes every row of ``[start, end)`` and adds the new ones (delta-rs ``overwrite`` with a
predicate), so a reader sees either the hours before the run or after it, never a mix, and an
hour that lost all its rows is emptied rather than left stale. Time travel (``version=``) and
the SQL views read it like silver.

Every row carries ``_source_ts_ms`` (Int64, epoch ms): the newest source commit among the silver
rows its hour was computed from; the freshness view reads gold's freshness from it.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl
from deltalake import CommitProperties, write_deltalake
from deltalake.exceptions import CommitFailedError

from binlake.delta_table_base import DeltaTableBase
from binlake.errors import FinalError

HOUR = "hour"
SOURCE_TS_MS = "_source_ts_ms"
# Commit metadata of a replacement: the hours it replaced, "<start>/<end>" (ISO, naive UTC).
REPLACED_HOURS_KEY = "binlake.gold.hours"
# A concurrent commit to the same table (another gold run) makes delta-rs refuse ours; retried.
_COMMIT_ATTEMPTS = 5


def _literal(moment: datetime) -> str:
    return f"'{moment.replace(tzinfo=None).isoformat(sep=' ')}'"


class GoldDeltaTable(DeltaTableBase):
    """The Delta table of one gold table at `uri` (a local path or an object-store URL)."""

    def replace_hours(self, frame: pl.DataFrame, start: datetime, end: datetime) -> int:
        """Make the hours ``[start, end)`` (naive UTC) hold exactly `frame`, in one commit;
        returns the table version written. Rows of `frame` outside the range are an error."""
        if HOUR not in frame.columns or SOURCE_TS_MS not in frame.columns:
            raise FinalError(
                f"gold table {self.uri}: rows need columns {HOUR!r} and {SOURCE_TS_MS!r}; "
                f"got {frame.columns}"
            )
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
        outside = frame.filter((pl.col(HOUR) < start) | (pl.col(HOUR) >= end))
        if outside.height:
            raise FinalError(
                f"gold table {self.uri}: {outside.height} row(s) outside the hours "
                f"{start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} being replaced, e.g. "
                f"{outside.row(0, named=True)}"
            )
        data = frame.to_arrow()
        properties = CommitProperties(
            custom_metadata={REPLACED_HOURS_KEY: f"{start.isoformat()}/{end.isoformat()}"}
        )
        predicate = f"{HOUR} >= {_literal(start)} AND {HOUR} < {_literal(end)}"
        for attempt in range(_COMMIT_ATTEMPTS):
            try:
                if self._open() is None:
                    # The first run creates the table; a concurrent first run makes this append
                    # fail as a commit conflict and the retry replaces instead.
                    write_deltalake(
                        self.uri,
                        data,
                        mode="append",
                        storage_options=self.storage_options,
                        commit_properties=properties,
                    )
                else:
                    write_deltalake(
                        self.uri,
                        data,
                        mode="overwrite",
                        predicate=predicate,
                        storage_options=self.storage_options,
                        commit_properties=properties,
                    )
                break
            except CommitFailedError:
                if attempt == _COMMIT_ATTEMPTS - 1:
                    raise
        version = self.version()
        assert version is not None
        return version

    def read(
        self, hours: tuple[datetime, datetime] | None = None, version: int | None = None
    ) -> pl.DataFrame:
        """Rows of the hours ``[start, end)`` given (all when None), as of `version` (latest
        when None). Raises FileNotFoundError before the first run."""
        table = self._open(version)
        if table is None:
            raise FileNotFoundError(f"gold table {self.uri} does not exist yet")
        filters = None
        if hours is not None:
            start, end = (moment.replace(tzinfo=None) for moment in hours)
            filters = [(HOUR, ">=", start), (HOUR, "<", end)]
        frame = pl.from_arrow(table.to_pyarrow_table(filters=filters))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def newest_source_ts_ms(self) -> int | None:
        """The newest source commit gold was computed from (None: no rows yet)."""
        table = self._open()
        if table is None:
            return None
        newest = pl.from_arrow(table.to_pyarrow_table(columns=[SOURCE_TS_MS]))
        assert isinstance(newest, pl.DataFrame)
        value = newest[SOURCE_TS_MS].max()
        return None if value is None else int(value)  # type: ignore[arg-type]

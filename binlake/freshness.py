"""Freshness lag math: how far a layer is behind the newest source commit (Dagster-free).

The SLOs are ``settings.freshness``: bronze 1 min, silver 2 min, gold 5 min behind the newest
commit of the source table(s). Freshness means lag behind the source everywhere: an idle source
stays fresh, a stalled pipeline turns red. The assets carry no Dagster freshness policy (it judges
time since the last materialization, so a quiet source would turn red; see
``dagster_defs.freshness.check``); the check below is the asset's freshness, the freshness sensor's
alerts follow it, and each tick's results are written to the freshness table
(``binlake.freshness_table``).

**The freshness check** (``dagster_defs.freshness.check``, one per asset) measures lag against
the source. Inputs, all in epoch seconds:

* ``S``: the source table's last commit, ``information_schema.TABLES.UPDATE_TIME``
  (``binlake.source_db.SourceDatabase.last_commit_time``; whole seconds). NULL after a server
  restart (or when the table left InnoDB's cache) until the next write: then the lag is unknown and
  the check passes saying so. For several tables (gold) each table is measured and the largest lag
  counts.
* ``L``: the newest source commit time (Debezium ``source.ts_ms``) the layer holds. Bronze: the
  largest ``max_source_ts_ms`` of the table's manifest entries. Silver and gold: the
  ``max_source_ts_ms`` metadata of the asset's latest materialization (epoch ms; per table as
  ``max_source_ts_ms/<db>.<table>`` when an asset publishes it, else one value for all tables).
* ``C``: when this check last found the layer caught up (carried in its own metadata,
  ``caught_up_at``, read back from its previous evaluation).

The layer is **caught up** when ``floor(L) >= S - tolerance`` (1 s by default): UPDATE_TIME has 1 s
resolution, and ``source.ts_ms`` is when the statement *started* (binlog event time), so a
transaction starting at 10.9 s and committing at 11.1 s has ``L`` = 10 s and ``S`` = 11 s. Lag is
then 0.

Otherwise the layer lacks at least the change committed at ``S``. The true lag is the age of the
oldest change it lacks, committed at some unknown time ``t1`` in ``(L, S]``; nothing cheaper than
the binlog says when. Both obvious figures are wrong in a common case:

* ``now - S`` (certain lower bound) reads ~0 on a busy source whatever the layer does: a stalled
  pipeline would never fail. It is reported as ``lag_at_least_seconds``.
* ``now - L`` (certain upper bound) is hugely overstated after a quiet period: source idle for a
  day, one commit 3 s ago not yet ingested, and the lag would read a day.

The figure used is ``lag_seconds = now - min(S, max(L, C))``. Every change the layer lacks now was
committed after ``L`` (it holds everything up to its newest change) and after ``C`` (it held
everything when last found caught up), so this is an upper bound of the true lag, never below it: a
stall on a busy source is caught (``L`` and ``C`` stop moving). It overstates by ``t1 - max(L,
C)``: on a busy source (the next commit follows ``L`` closely) next to nothing; after a quiet
period at most the time since the previous caught-up evaluation, which is why the freshness sensor
evaluates every 30 s. Without a previous evaluation it is ``now - L``; with neither ``L`` nor ``C``
it is ``now - S`` (the lower bound, flagged). ``min(S, ...)`` keeps it at or above the lower bound
if clocks disagree. ``now`` is the Dagster host's clock, ``S`` and ``L`` are the source's: skew
between them adds to or subtracts from the lag (keep hosts on NTP).

Known limits: a change committed less than ``tolerance`` after the layer's newest one counts as
held; a transaction whose first statement started more than ``tolerance`` before its commit looks
unconsumed until the next commit (on a quiet source it fails once that exceeds the SLO); the check
passes while UPDATE_TIME is NULL.

**The bronze writer's consumer lag** (``binlake.bronze.consumer_lag``, resource ``consumer_lag``)
is a second, independent figure: the newest source commit (``source.ts_ms``) in the table's Kafka
topic minus that of the oldest record the bronze writer has not stored. Records not in bronze are
in no later layer either, so it is a lower bound of every layer's lag, measured from Kafka rather
than the source's UPDATE_TIME, and it does not depend on files arriving: a writer that keeps
writing small files while falling further behind fails the check. The figure compared to the SLO is
the larger of the two; the description names the consumer lag when it decides. Unknown consumer lag
(no topic, no commit, broker down) leaves the check to the first figure.

Evaluation. A freshness check must run while nothing upstream changes (that is when a stall shows),
and launching a run every 30 s would cost a process (locally) or a pod per run. So the freshness
sensor (``dagster_defs.freshness.sensor``) evaluates every freshness check, in any layer of the
code location, without a run, and reports the results as runless check evaluations; bronze manifest
entries are read incrementally from a byte cursor. Executing a check in a run (UI, tests) computes
the same result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from binlake.bronze.consumer_lag import TableLag as ConsumerTableLag
from binlake.bronze.manifest import ManifestEntry

DEFAULT_TOLERANCE_SECONDS = 1.0

Layer = Literal["bronze", "silver", "gold"]
LAYERS: tuple[Layer, ...] = ("bronze", "silver", "gold")


class CommitTimes(Protocol):
    """The source's last commit time of a table (`binlake.source_db.SourceDatabase`)."""

    def last_commit_time(self, table: str) -> datetime | None: ...


@dataclass(frozen=True)
class LayerTableLag:
    """One table's lag in one layer (bronze, silver or gold) behind its source."""

    table: str
    source_last_commit: float | None  # S, epoch seconds; None when the source does not know
    layer_newest_source_ts: float | None  # L, epoch seconds; None when the layer holds nothing
    caught_up: bool | None  # None when S is unknown
    seconds: float | None  # this table's lag; None when unknown
    at_least_seconds: float | None


@dataclass(frozen=True)
class Lag:
    """How far a layer is behind its source tables at `now`."""

    now: float
    seconds: float | None  # the figure compared to the SLO; None when no source time is known
    at_least_seconds: float | None  # certain lower bound (now - S of the lagging table)
    caught_up: bool | None  # True: lag 0; None: unknown
    caught_up_at: float | None  # to carry into the next evaluation
    reference: str  # what `seconds` counts from: "", "layer", "caught_up_at", "source"
    tables: tuple[LayerTableLag, ...]

    @property
    def source_last_commit(self) -> float | None:
        known = [t.source_last_commit for t in self.tables if t.source_last_commit is not None]
        return max(known, default=None)

    @property
    def layer_newest_source_ts(self) -> float | None:
        known = [
            t.layer_newest_source_ts for t in self.tables if t.layer_newest_source_ts is not None
        ]
        return max(known, default=None)


def measure_lag(
    now: float,
    source_last_commit: Mapping[str, float | None],
    layer_newest_source_ts: Mapping[str, float | None],
    caught_up_at: float | None = None,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> Lag:
    """The layer's lag behind the source tables (see the module docstring for the figure).

    `source_last_commit` (S) and `layer_newest_source_ts` (L) are epoch seconds per source
    table; `caught_up_at` (C) is when the layer was last found caught up, if ever.
    """
    if caught_up_at is not None and caught_up_at > now:
        caught_up_at = None  # from a clock that ran ahead; not evidence of anything
    tables: list[LayerTableLag] = []
    references: dict[str, str] = {}
    for table, s in source_last_commit.items():
        held = layer_newest_source_ts.get(table)
        if s is None:
            tables.append(LayerTableLag(table, None, held, None, None, None))
            continue
        if held is not None and math.floor(held) >= math.floor(s) - tolerance_seconds:
            tables.append(LayerTableLag(table, s, held, True, 0.0, 0.0))
            continue
        bound, reference = max(
            (
                (value, name)
                for value, name in ((held, "layer"), (caught_up_at, "caught_up_at"))
                if value is not None
            ),
            default=(s, "source"),
        )
        if bound >= s:
            bound, reference = s, "source"
        tables.append(
            LayerTableLag(table, s, held, False, max(0.0, now - bound), max(0.0, now - s))
        )
        references[table] = reference
    known = [t for t in tables if t.caught_up is not None]
    if not known:
        return Lag(now, None, None, None, caught_up_at, "", tuple(tables))
    worst = max(known, key=lambda t: t.seconds or 0.0)
    caught_up = all(t.caught_up for t in known)
    # Only evidence about every table moves C: one whose commit time is unknown might lack
    # changes from before the source restarted.
    complete = caught_up and len(known) == len(tables)
    return Lag(
        now=now,
        seconds=worst.seconds,
        at_least_seconds=max(t.at_least_seconds or 0.0 for t in known),
        caught_up=caught_up,
        caught_up_at=now if complete else caught_up_at,
        reference=references.get(worst.table, ""),
        tables=tuple(tables),
    )


def newest_source_ts_ms(
    entries: Iterable[ManifestEntry], newest: dict[str, int] | None = None
) -> dict[str, int]:
    """Largest ``max_source_ts_ms`` per table of `entries`, folded into `newest` (returned)."""
    newest = {} if newest is None else newest
    for entry in entries:
        ts = entry.max_source_ts_ms
        if ts is not None and ts > newest.get(entry.table, -1):
            newest[entry.table] = ts
    return newest


def source_commit_times(source: CommitTimes, tables: Iterable[str]) -> dict[str, float | None]:
    """S per table: its last commit at the source, epoch seconds (None when unknown)."""
    times: dict[str, float | None] = {}
    for table in tables:
        commit = source.last_commit_time(table)
        times[table] = None if commit is None else commit.timestamp()
    return times


def worst_consumer_lag(
    consumer_lag: Mapping[str, ConsumerTableLag | str], tables: Iterable[str]
) -> ConsumerTableLag | None:
    """The table of `tables` whose bronze writer lag in seconds is largest, among the known."""
    known = [
        lag
        for table in tables
        if isinstance(lag := consumer_lag.get(table), ConsumerTableLag) and lag.seconds is not None
    ]
    return max(known, key=lambda lag: lag.seconds or 0.0, default=None)


@dataclass
class FreshnessCursor:
    """What the freshness sensor carries from one tick to the next: the bronze manifest's byte
    offset read so far, the newest source time per table seen in it, and when each SLO miss
    still open was last alerted (keyed by check)."""

    manifest_bytes: int = 0
    bronze_newest_ms: dict[str, int] = field(default_factory=dict)
    slo_misses_alerted_at: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, cursor: str | None) -> FreshnessCursor:
        """The cursor `cursor` holds; a part that does not parse starts over on its own."""
        return cls(*_parse_position(cursor), _parse_misses(cursor))

    def to_json(self) -> str:
        return json.dumps(
            {
                "manifest_bytes": self.manifest_bytes,
                "bronze_newest_ms": self.bronze_newest_ms,
                "slo_misses_alerted_at": self.slo_misses_alerted_at,
            }
        )


def _parse_position(cursor: str | None) -> tuple[int, dict[str, int]]:
    try:
        state = json.loads(cursor) if cursor else {}
        return int(state.get("manifest_bytes", 0)), {
            str(k): int(v) for k, v in state.get("bronze_newest_ms", {}).items()
        }
    except (ValueError, TypeError, AttributeError):
        return 0, {}


def _parse_misses(cursor: str | None) -> dict[str, float]:
    try:
        state = json.loads(cursor) if cursor else {}
        return {str(k): float(v) for k, v in state.get("slo_misses_alerted_at", {}).items()}
    except (ValueError, TypeError, AttributeError):
        return {}


@dataclass(frozen=True)
class RowsAfter:
    """Rows bronze holds that were committed after a later layer's newest source commit."""

    rows: int
    exact: bool  # False: a file straddles the commit, so `rows` is an upper bound


def bronze_rows_after(
    live: Iterable[ManifestEntry], table: str, newest_source_ts: float | None
) -> RowsAfter:
    """Rows of `table`'s live bronze files (``binlake.bronze.manifest.live_entries``) committed
    after `newest_source_ts` (epoch s; None: the layer holds nothing): the records bronze holds
    and a layer holding changes up to that commit lacks. A file whose commits straddle it counts
    whole (an upper bound), a file without commit times too."""
    newest_ms = None if newest_source_ts is None else math.floor(newest_source_ts * 1000)
    rows, exact = 0, True
    for entry in live:
        if entry.table != table or not entry.path:
            continue
        if newest_ms is None:
            rows += entry.rows
            continue
        low, high = entry.min_source_ts_ms, entry.max_source_ts_ms
        if high is not None and high <= newest_ms:
            continue
        if low is None or low <= newest_ms:
            exact = False
        rows += entry.rows
    return RowsAfter(rows, exact)

"""Freshness: how far each layer is behind the newest source commit, against its stated SLO.

The SLOs are ``settings.freshness``: bronze 1 min, silver 2 min, gold 5 min behind the newest
commit of the source table(s). Two things implement them.

**Dagster's freshness policy** (``freshness_policy``), attached to the asset so the UI shows a
freshness state. Dagster 1.13 evaluates it in its freshness daemon (no runs), from the time of
the asset's last materialization only: it means "new data arrived within the window", so on a
quiet source it turns FAIL although nothing is late. It is a hint; the check below is the SLO.

**The freshness check** (``build_freshness_check``, one per asset), measuring lag against the
source. Inputs, all in epoch seconds:

* ``S``: the source table's last commit, ``information_schema.TABLES.UPDATE_TIME``
  (``MySQLSource.last_commit_time``; whole seconds). NULL after a server restart (or when the
  table left InnoDB's cache) until the next write: then the lag is unknown and the check passes
  saying so. For several tables (gold) each table is measured and the largest lag counts.
* ``L``: the newest source commit time (Debezium ``source.ts_ms``) the layer holds. Bronze: the
  largest ``max_source_ts_ms`` of the table's manifest entries. Silver and gold: the
  ``max_source_ts_ms`` metadata of the asset's latest materialization (epoch ms; per table as
  ``max_source_ts_ms/<db>.<table>`` when an asset publishes it, else one value for all tables).
* ``C``: when this check last found the layer caught up (carried in its own metadata,
  ``caught_up_at``, read back from its previous evaluation).

The layer is **caught up** when ``floor(L) >= S - tolerance`` (1 s by default): UPDATE_TIME has
1 s resolution, and ``source.ts_ms`` is when the statement *started* (binlog event time), so a
transaction starting at 10.9 s and committing at 11.1 s has ``L`` = 10 s and ``S`` = 11 s. Lag
is then 0.

Otherwise the layer lacks at least the change committed at ``S``. The true lag is the age of the
oldest change it lacks, committed at some unknown time ``t1`` in ``(L, S]``; nothing cheaper
than the binlog says when. Both obvious figures are wrong in a common case:

* ``now - S`` (certain lower bound) reads ~0 on a busy source whatever the layer does: a stalled
  pipeline would never fail. It is reported as ``lag_at_least_seconds``.
* ``now - L`` (certain upper bound) is hugely overstated after a quiet period: source idle for a
  day, one commit 3 s ago not yet ingested, and the lag would read a day.

The figure used is ``lag_seconds = now - min(S, max(L, C))``. Every change the layer lacks now was
committed after ``L`` (it holds everything up to its newest change) and after ``C`` (it held
everything when last found caught up), so this is an upper bound of the true lag, never below it:
a stall on a busy source is caught (``L`` and ``C`` stop moving). It overstates by
``t1 - max(L, C)``: on a busy source (the next commit follows ``L`` closely) next to nothing;
after a quiet period at most the time since the previous caught-up evaluation, which is why the
freshness sensor evaluates every 30 s. Without a previous evaluation it is ``now - L``; with
neither ``L`` nor ``C`` it is ``now - S`` (the lower bound, flagged). ``min(S, ...)`` keeps it at
or above the lower bound if clocks disagree. ``now`` is the Dagster host's clock, ``S`` and ``L``
are the source's: skew between them adds to or subtracts from the lag (keep hosts on NTP).

Known limits: a change committed less than ``tolerance`` after the layer's newest one counts as
held; a transaction whose first statement started more than ``tolerance`` before its commit looks
unconsumed until the next commit (on a quiet source it fails once that exceeds the SLO); the
check passes while UPDATE_TIME is NULL.

**The bronze writer's consumer lag** (``binlake.bronze.consumer_lag``, resource ``consumer_lag``) is a
second, independent figure: the newest source commit (``source.ts_ms``) in the table's Kafka
topic minus that of the oldest record the bronze writer has not stored. Records not in bronze
are in no later layer either, so it is a lower bound of every layer's lag, measured from Kafka
rather than the source's UPDATE_TIME, and it does not depend on files arriving: a writer that
keeps writing small files while falling further behind fails the check. The figure compared to
the SLO is the larger of the two; the description names the consumer lag when it decides.
Unknown consumer lag (no topic, no commit, broker down) leaves the check to the first figure.

Evaluation. A freshness check must run while nothing upstream changes (that is when a stall
shows), and launching a run every 30 s would cost a process (locally) or a pod per run. So the
freshness sensor (``build_freshness_sensor``) evaluates every check built here, in any layer of
the code location, without a run, and reports the results as runless check evaluations; bronze
manifest entries are read incrementally from a byte cursor. Executing a check in a run (UI,
tests) computes the same result.
"""

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import dagster as dg
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
)

from binlake.alerts import Alerter
from binlake.bronze.consumer_lag import TableLag as ConsumerTableLag
from binlake.bronze.manifest import ManifestEntry
from dagster_defs.resources import BronzeLake, ConsumerLagSource, MySQLSource

FRESHNESS_CHECK = "freshness"
FRESHNESS_SENSOR_NAME = "binlake_freshness"
FRESHNESS_SENSOR_INTERVAL_SECONDS = 30
NEWEST_SOURCE_TS_KEY = "max_source_ts_ms"  # materialization metadata of silver and gold, epoch ms
DEFAULT_TOLERANCE_SECONDS = 1.0

Layer = Literal["bronze", "silver", "gold"]
LAYERS: tuple[Layer, ...] = ("bronze", "silver", "gold")

# Check spec metadata that lets the sensor find and evaluate the checks built here.
_META_LAYER = "binlake/freshness_layer"
_META_SLO = "binlake/freshness_slo_seconds"
_META_TABLES = "binlake/freshness_source_tables"
_META_TOLERANCE = "binlake/freshness_tolerance_seconds"
_META_SEVERITY = "binlake/freshness_severity"
_CAUGHT_UP_AT = "caught_up_at"

Clock = Callable[[], float]


# -- Dagster's freshness policy -------------------------------------------------------------------


def freshness_policy(minutes: float) -> dg.FreshnessPolicy:
    """Dagster's time-window policy: FAIL when the asset has not materialized for `minutes`.

    Dagster refuses windows under a minute, so shorter SLOs get one minute. WARN at half the
    window when that is at least a minute (silver 1 min, gold 2.5 min; none for bronze).
    """
    fail = timedelta(minutes=max(minutes, 1.0))
    warn = fail / 2 if fail / 2 >= timedelta(minutes=1) else None
    return dg.FreshnessPolicy.time_window(fail_window=fail, warn_window=warn)


# -- the lag (pure) -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableLag:
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
    tables: tuple[TableLag, ...]

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
    tables: list[TableLag] = []
    references: dict[str, str] = {}
    for table, s in source_last_commit.items():
        held = layer_newest_source_ts.get(table)
        if s is None:
            tables.append(TableLag(table, None, held, None, None, None))
            continue
        if held is not None and math.floor(held) >= math.floor(s) - tolerance_seconds:
            tables.append(TableLag(table, s, held, True, 0.0, 0.0))
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
        tables.append(TableLag(table, s, held, False, max(0.0, now - bound), max(0.0, now - s)))
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


# -- what the check needs to know about its asset -------------------------------------------------


@dataclass(frozen=True)
class FreshnessTarget:
    """One freshness check: the asset, its layer, its SLO and the source tables it follows."""

    asset_key: dg.AssetKey
    layer: Layer
    slo_seconds: float
    source_tables: tuple[str, ...]
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR

    @property
    def check_key(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(self.asset_key, FRESHNESS_CHECK)

    def spec_metadata(self) -> dict[str, Any]:
        return {
            _META_LAYER: self.layer,
            _META_SLO: self.slo_seconds,
            _META_TABLES: ",".join(self.source_tables),
            _META_TOLERANCE: self.tolerance_seconds,
            _META_SEVERITY: self.severity.value,
        }

    @classmethod
    def from_spec(cls, spec: dg.AssetCheckSpec) -> "FreshnessTarget | None":
        """The target of a check spec built here; None for any other check."""
        meta = {k: getattr(v, "value", v) for k, v in (spec.metadata or {}).items()}
        if spec.name != FRESHNESS_CHECK or meta.get(_META_LAYER) not in LAYERS:
            return None
        return cls(
            asset_key=spec.asset_key,
            layer=meta[_META_LAYER],
            slo_seconds=float(meta[_META_SLO]),
            source_tables=tuple(str(meta[_META_TABLES]).split(",")),
            tolerance_seconds=float(meta.get(_META_TOLERANCE, DEFAULT_TOLERANCE_SECONDS)),
            severity=dg.AssetCheckSeverity(meta.get(_META_SEVERITY, "ERROR")),
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


def source_commit_times(
    mysql_source: MySQLSource, tables: Iterable[str]
) -> dict[str, float | None]:
    times: dict[str, float | None] = {}
    for table in tables:
        commit = mysql_source.last_commit_time(table)
        times[table] = None if commit is None else commit.timestamp()
    return times


def _seconds(value: Any, *, milliseconds: bool) -> float | None:
    if isinstance(value, dg.TimestampMetadataValue):
        return float(value.value)
    value = getattr(value, "value", value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value / 1000 if milliseconds else float(value)


def materialized_newest_source_ts(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, tables: Sequence[str]
) -> dict[str, float | None]:
    """L per table from the asset's latest materialization's ``max_source_ts_ms`` metadata."""
    event = instance.get_latest_materialization_event(asset_key)
    materialization = event.asset_materialization if event is not None else None
    metadata = materialization.metadata if materialization is not None else {}
    overall = _seconds(metadata.get(NEWEST_SOURCE_TS_KEY), milliseconds=True)
    per_table: dict[str, float | None] = {}
    for table in tables:
        own = metadata.get(f"{NEWEST_SOURCE_TS_KEY}/{table}")
        per_table[table] = overall if own is None else _seconds(own, milliseconds=True)
    return per_table


def previous_caught_up_at(
    instance: dg.DagsterInstance, check_key: dg.AssetCheckKey
) -> float | None:
    """`caught_up_at` of the check's latest completed evaluation (run or runless), if any."""
    records = instance.event_log_storage.get_asset_check_execution_history(
        check_key, limit=1, status=set(COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES)
    )
    if not records or records[0].event is None or records[0].event.dagster_event is None:
        return None
    evaluation = records[0].event.dagster_event.event_specific_data
    metadata = getattr(evaluation, "metadata", None) or {}
    return _seconds(metadata.get(_CAUGHT_UP_AT), milliseconds=False)


# -- the verdict ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FreshnessOutcome:
    passed: bool
    description: str
    metadata: dict[str, dg.MetadataValue]
    lag: Lag

    def result(self, target: FreshnessTarget) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            passed=self.passed,
            severity=target.severity,
            description=self.description,
            metadata=self.metadata,
        )

    def evaluation(self, target: FreshnessTarget) -> dg.AssetCheckEvaluation:
        return dg.AssetCheckEvaluation(
            asset_key=target.asset_key,
            check_name=FRESHNESS_CHECK,
            passed=self.passed,
            severity=target.severity,
            description=self.description,
            metadata=self.metadata,
            blocking=False,
        )


def _ts(value: float | None) -> dg.MetadataValue:
    return dg.MetadataValue.null() if value is None else dg.MetadataValue.timestamp(value)


def _iso(value: float | None) -> str:
    if value is None:
        return "none"
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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


def judge_freshness(
    target: FreshnessTarget,
    lag: Lag,
    consumer_lag: Mapping[str, ConsumerTableLag | str] | None = None,
) -> FreshnessOutcome:
    """Pass/fail, description and metadata of `lag` and the bronze writer's `consumer_lag`
    (per table) against the target's SLO (pure)."""
    outcome = _judge_source_lag(target, lag)
    behind = worst_consumer_lag(consumer_lag or {}, target.source_tables)
    if behind is None or behind.seconds is None:
        return outcome
    metadata = {
        **outcome.metadata,
        "consumer_lag_seconds": dg.MetadataValue.float(behind.seconds),
        "consumer_lag_records": dg.MetadataValue.text(behind.records_text()),
        "consumer_lag_table": dg.MetadataValue.text(behind.table),
    }
    consumer_text = (
        f"the bronze writer is {behind.seconds:.0f} s behind the newest source commit in "
        f"Kafka on {behind.table} ({behind.records_text()} record(s) not in bronze)"
    )
    if lag.seconds is not None and behind.seconds <= lag.seconds:
        description = f"{outcome.description} Consumer lag: {consumer_text}."
        return FreshnessOutcome(outcome.passed, description, metadata, lag)
    metadata["lag_seconds"] = dg.MetadataValue.float(round(behind.seconds, 3))
    slo = target.slo_seconds
    passed = behind.seconds <= slo
    description = (
        f"{target.layer} is at least {behind.seconds:.0f} s behind "
        f"{', '.join(target.source_tables)} (SLO {slo:g} s): {consumer_text}. "
        f"{outcome.description}"
    )
    return FreshnessOutcome(passed and outcome.passed, description, metadata, lag)


def _judge_source_lag(target: FreshnessTarget, lag: Lag) -> FreshnessOutcome:
    slo = target.slo_seconds
    layer = target.layer
    tables = ", ".join(target.source_tables)
    metadata: dict[str, dg.MetadataValue] = {
        "lag_seconds": dg.MetadataValue.null()
        if lag.seconds is None
        else dg.MetadataValue.float(round(lag.seconds, 3)),
        "slo_seconds": dg.MetadataValue.float(slo),
        "source_last_commit": _ts(lag.source_last_commit),
        "layer_newest_source_ts": _ts(lag.layer_newest_source_ts),
        "lag_at_least_seconds": dg.MetadataValue.null()
        if lag.at_least_seconds is None
        else dg.MetadataValue.float(round(lag.at_least_seconds, 3)),
        _CAUGHT_UP_AT: _ts(lag.caught_up_at),
        "measured_at": dg.MetadataValue.timestamp(lag.now),
        "layer": dg.MetadataValue.text(layer),
    }
    if len(lag.tables) > 1:
        metadata["tables"] = dg.MetadataValue.json(
            {
                t.table: {
                    "source_last_commit": _iso(t.source_last_commit),
                    "layer_newest_source_ts": _iso(t.layer_newest_source_ts),
                    "lag_seconds": None if t.seconds is None else round(t.seconds, 3),
                }
                for t in lag.tables
            }
        )
    unknown = [t.table for t in lag.tables if t.caught_up is None]
    note = (
        f" Source commit time unknown for {', '.join(unknown)} (UPDATE_TIME is NULL: no commit "
        "since the server started or the table left InnoDB's cache)."
        if unknown
        else ""
    )
    if lag.seconds is None:
        return FreshnessOutcome(
            True, f"{layer} lag behind {tables} unknown, passing.{note}", metadata, lag
        )
    passed = lag.seconds <= slo
    if lag.caught_up:
        description = (
            f"{layer} holds the newest source commit of {tables} "
            f"({_iso(lag.source_last_commit)}): lag 0 s (SLO {slo:g} s).{note}"
        )
    else:
        since = {
            "layer": "the newest change it holds",
            "caught_up_at": f"when it was last caught up ({_iso(lag.caught_up_at)})",
            "source": "the newest source commit (a lower bound: nothing better is known)",
        }.get(lag.reference, "")
        description = (
            f"{layer} is {lag.seconds:.0f} s behind {tables} (SLO {slo:g} s, at least "
            f"{lag.at_least_seconds or 0:.0f} s): newest source commit "
            f"{_iso(lag.source_last_commit)}, newest change in {layer} "
            f"{_iso(lag.layer_newest_source_ts)}; counted from {since}.{note}"
        )
    return FreshnessOutcome(passed, description, metadata, lag)


def evaluate_freshness(
    target: FreshnessTarget,
    *,
    now: float,
    source_last_commit: Mapping[str, float | None],
    layer_newest_source_ts: Mapping[str, float | None],
    previous_caught_up: float | None,
    consumer_lag: Mapping[str, ConsumerTableLag | str] | None = None,
) -> FreshnessOutcome:
    lag = measure_lag(
        now,
        {t: source_last_commit.get(t) for t in target.source_tables},
        layer_newest_source_ts,
        previous_caught_up,
        target.tolerance_seconds,
    )
    return judge_freshness(target, lag, consumer_lag)


def _layer_newest(
    target: FreshnessTarget,
    instance: dg.DagsterInstance,
    bronze_newest_ms: Mapping[str, int],
) -> dict[str, float | None]:
    if target.layer == "bronze":
        return {
            t: (bronze_newest_ms[t] / 1000 if t in bronze_newest_ms else None)
            for t in target.source_tables
        }
    return materialized_newest_source_ts(instance, target.asset_key, target.source_tables)


# -- the check ------------------------------------------------------------------------------------


def build_freshness_check(
    asset_key: dg.AssetKey,
    layer: Layer,
    slo_minutes: float,
    source_tables: Sequence[str],
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    clock: Clock = time.time,
) -> dg.AssetChecksDefinition:
    """The freshness check of `asset_key`: lag behind the newest commit of `source_tables`.

    `layer` says where the layer's newest source time comes from: "bronze" reads the manifest
    (the asset is the bronze asset of its one table); "silver" and "gold" read the
    ``max_source_ts_ms`` metadata of the asset's latest materialization. The freshness sensor
    finds and evaluates every check built here; `clock` is injectable for tests.
    """
    if layer not in LAYERS:
        raise ValueError(f"layer {layer!r} is not one of {LAYERS}")
    if not source_tables:
        raise ValueError("a freshness check needs at least one source table")
    target = FreshnessTarget(
        asset_key, layer, slo_minutes * 60.0, tuple(source_tables), tolerance_seconds, severity
    )

    @dg.asset_check(
        asset=asset_key,
        name=FRESHNESS_CHECK,
        description=(
            f"{layer.capitalize()} is at most {slo_minutes:g} min behind the newest commit of "
            f"{', '.join(source_tables)} in the source (information_schema UPDATE_TIME against "
            "the newest source.ts_ms the layer holds), and at most that far behind in the bronze "
            "writer's consumer lag (Kafka). Evaluated every "
            f"{FRESHNESS_SENSOR_INTERVAL_SECONDS} s by the {FRESHNESS_SENSOR_NAME} sensor."
        ),
        metadata=target.spec_metadata(),
        blocking=False,
    )
    def _check(
        context: dg.AssetCheckExecutionContext,
        bronze_lake: BronzeLake,
        mysql_source: MySQLSource,
        consumer_lag: ConsumerLagSource,
    ) -> dg.AssetCheckResult:
        bronze_newest = (
            newest_source_ts_ms(bronze_lake.manifest().entries()) if layer == "bronze" else {}
        )
        layer_newest = _layer_newest(target, context.instance, bronze_newest)
        source = source_commit_times(mysql_source, target.source_tables)
        outcome = evaluate_freshness(
            target,
            now=clock(),
            source_last_commit=source,
            layer_newest_source_ts=layer_newest,
            previous_caught_up=previous_caught_up_at(context.instance, target.check_key),
            consumer_lag=consumer_lag.measure(target.source_tables),
        )
        return outcome.result(target)

    return _check


# -- the sensor -----------------------------------------------------------------------------------


def freshness_targets(repository: dg.RepositoryDefinition) -> list[FreshnessTarget]:
    """Every check of the code location built by `build_freshness_check`."""
    targets = []
    for checks_def in repository.asset_checks_defs_by_key.values():
        for spec in checks_def.check_specs:
            target = FreshnessTarget.from_spec(spec)
            if target is not None and target not in targets:
                targets.append(target)
    return sorted(targets, key=lambda t: (LAYERS.index(t.layer), t.asset_key.to_user_string()))


def _parse_cursor(cursor: str | None) -> tuple[int, dict[str, int]]:
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


def freshness_alerts(
    outcomes: Sequence[tuple[FreshnessTarget, FreshnessOutcome]],
    alerted_at: Mapping[str, float],
    now: float,
    repeat_seconds: float,
) -> tuple[list[str], dict[str, float]]:
    """Alert texts for SLO misses, and when each miss still open was last alerted (pure).

    One alert when a check starts failing, again every `repeat_seconds` while it keeps failing,
    and one when it passes again; a tick that changes nothing sends nothing.
    """
    texts: list[str] = []
    still_missed: dict[str, float] = {}
    for target, outcome in outcomes:
        key = target.check_key.to_user_string()
        previous = alerted_at.get(key)
        if outcome.passed:
            if previous is not None:
                texts.append(f"binlake: {key} is within its SLO again. {outcome.description}")
            continue
        if previous is not None and now - previous < repeat_seconds:
            still_missed[key] = previous
            continue
        still = "still misses" if previous is not None else "misses"
        texts.append(
            f"binlake: {key} {still} its freshness SLO ({target.severity.value}). "
            f"{outcome.description}"
        )
        still_missed[key] = now
    return texts, still_missed


def build_freshness_sensor(
    *,
    name: str = FRESHNESS_SENSOR_NAME,
    interval_seconds: int = FRESHNESS_SENSOR_INTERVAL_SECONDS,
    clock: Clock = time.time,
    alerter: Alerter | None = None,
    alert_repeat_seconds: float = 3600.0,
) -> dg.SensorDefinition:
    """Evaluates every freshness check of the code location without a run.

    The cursor keeps the bronze manifest's byte offset and the newest source time per table
    seen so far, so a tick reads only the manifest lines appended since the previous one, and
    when each SLO miss still open was last sent to `alerter` (see ``freshness_alerts``).
    """

    @dg.sensor(
        name=name,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Measures each layer's lag behind the newest source commit and reports it "
        "as the result of the assets' freshness checks (runless, no run launched).",
    )
    def _sensor(
        context: dg.SensorEvaluationContext,
        bronze_lake: BronzeLake,
        mysql_source: MySQLSource,
        consumer_lag: ConsumerLagSource,
    ) -> dg.SensorResult | dg.SkipReason:
        repository = context.repository_def
        targets = freshness_targets(repository) if repository is not None else []
        if not targets:
            return dg.SkipReason("no freshness checks in this code location")
        position, bronze_newest = _parse_cursor(context.cursor)
        if any(t.layer == "bronze" for t in targets):
            if bronze_lake.manifest_size() < position:  # a new lake: start over
                position, bronze_newest = 0, {}
            entries, position = bronze_lake.read_manifest_since(position)
            newest_source_ts_ms(entries, bronze_newest)
        tables = sorted({table for t in targets for table in t.source_tables})
        source = source_commit_times(mysql_source, tables)
        consumer = consumer_lag.measure(tables)
        events: list[dg.AssetCheckEvaluation] = []
        outcomes: list[tuple[FreshnessTarget, FreshnessOutcome]] = []
        for target in targets:
            outcome = evaluate_freshness(
                target,
                now=clock(),
                source_last_commit=source,
                layer_newest_source_ts=_layer_newest(target, context.instance, bronze_newest),
                previous_caught_up=previous_caught_up_at(context.instance, target.check_key),
                consumer_lag=consumer,
            )
            events.append(outcome.evaluation(target))
            outcomes.append((target, outcome))
        texts, misses = freshness_alerts(
            outcomes, _parse_misses(context.cursor), clock(), alert_repeat_seconds
        )
        for text in texts:
            if alerter is not None:
                alerter.send(text)
        cursor = json.dumps(
            {
                "manifest_bytes": position,
                "bronze_newest_ms": bronze_newest,
                "slo_misses_alerted_at": misses,
            }
        )
        return dg.SensorResult(asset_events=events, cursor=cursor)

    return _sensor

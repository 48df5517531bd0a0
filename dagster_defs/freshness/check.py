"""The freshness check of an asset: its layer's lag behind the newest source commit, against
the SLO in ``settings.freshness`` (bronze 1 min, silver 2 min, gold 5 min).

The lag is `binlake.freshness.measure_lag`'s (its docstring says what the figure means); here it
is judged against the SLO, with the bronze writer's consumer lag as a second figure, and reported
as a check result. The freshness sensor (`dagster_defs.freshness.sensor`) evaluates every check
built here without a run; executing a check in a run (UI, tests) computes the same result.

This check is the asset's freshness. Dagster 1.13's ``FreshnessPolicy`` cannot say that. Its
freshness daemon re-evaluates every policy every 30 s from the asset's last materialization only
(``TimeWindowFreshnessPolicy``: FAIL when the newest materialization is older than the window;
``CronFreshnessPolicy``: none since a cron tick) and writes a ``FreshnessStateChange`` whenever its
verdict differs from the stored state, so a state reported by a sensor
(``instance.report_runless_asset_event``) is overwritten on the daemon's next pass; the evaluators
are a closed internal table and the UI shows an asset without a policy as "not applicable". On a
quiet source nothing materializes, so a time window turns red although nothing is late. binlake's
assets therefore carry no Dagster freshness policy: their freshness is the lag-based freshness
check (`dagster_defs.freshness.check`, evaluated by the freshness sensor), which the UI shows as
the asset's check health, and which the freshness alerts follow. The asset descriptions say so
(`freshness_note`).
"""

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
)

from binlake.bronze.consumer_lag import TableLag as ConsumerTableLag
from binlake.freshness import (
    DEFAULT_TOLERANCE_SECONDS,
    LAYERS,
    Lag,
    Layer,
    measure_lag,
    newest_source_ts_ms,
    source_commit_times,
    worst_consumer_lag,
)
from binlake.freshness_table import FreshnessRow
from dagster_defs.resources import BronzeLake, ConsumerLagSource, MySQLSource

FRESHNESS_CHECK = "freshness"
FRESHNESS_SENSOR_NAME = "binlake_freshness"
FRESHNESS_SENSOR_INTERVAL_SECONDS = 30
NEWEST_SOURCE_TS_KEY = "max_source_ts_ms"  # materialization metadata of silver and gold, epoch ms

# Check spec metadata that lets the sensor find and evaluate the checks built here.
_META_LAYER = "binlake/freshness_layer"
_META_SLO = "binlake/freshness_slo_seconds"
_META_TABLES = "binlake/freshness_source_tables"
_META_TOLERANCE = "binlake/freshness_tolerance_seconds"
_META_SEVERITY = "binlake/freshness_severity"
_CAUGHT_UP_AT = "caught_up_at"

Clock = Callable[[], float]


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


def freshness_note(layer: Layer, slo_minutes: float) -> str:
    """The sentence an asset's description ends with, saying what its freshness means."""
    return (
        f"Freshness is {layer}'s lag behind the newest source commit (the freshness checks, "
        f"SLO {slo_minutes:g} min): an idle source stays fresh, a stalled pipeline turns red. "
        "No Dagster freshness policy: its time window counts time since the last "
        "materialization."
    )


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

    @property
    def lag_seconds(self) -> float | None:
        """The figure compared to the SLO (the consumer lag when it decided)."""
        value = getattr(self.metadata.get("lag_seconds"), "value", None)
        return float(value) if isinstance(value, int | float) else None

    def row(self, target: FreshnessTarget) -> FreshnessRow:
        """This result as a row of the freshness table."""
        return FreshnessRow(
            layer=target.layer,
            asset=target.asset_key.to_user_string(),
            source_tables=target.source_tables,
            newest_source_commit=self.lag.layer_newest_source_ts,
            lag_seconds=self.lag_seconds,
            slo_seconds=target.slo_seconds,
            passed=self.passed,
            checked_at=self.lag.now,
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


def layer_newest_source_ts(
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
        layer_newest = layer_newest_source_ts(target, context.instance, bronze_newest)
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

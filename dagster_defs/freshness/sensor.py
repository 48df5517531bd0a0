"""The freshness sensor: evaluates every freshness check of the code location without a run.

A freshness check must run while nothing upstream changes (that is when a stall shows), and
launching a run every 30 s would cost a process (locally) or a pod per run. So this sensor
reports the results as runless check evaluations, reading bronze manifest entries incrementally
from a byte cursor, alerts on SLO misses, and replaces the freshness table
(`binlake.freshness_table`, what ``lake.freshness`` and ``binlake status`` read) with the results.
"""

import time
from collections.abc import Mapping, Sequence

import dagster as dg
from deltalake.exceptions import DeltaError

from binlake.alerts import Alerter
from binlake.freshness import (
    LAYERS,
    FreshnessCursor,
    newest_source_ts_ms,
    source_commit_times,
)
from binlake.freshness_table import freshness_table_uri, write_freshness_table
from dagster_defs.declare import running_sensor
from dagster_defs.freshness.check import (
    FRESHNESS_SENSOR_INTERVAL_SECONDS,
    FRESHNESS_SENSOR_NAME,
    Clock,
    FreshnessOutcome,
    FreshnessTarget,
    evaluate_freshness,
    layer_newest_source_ts,
    previous_caught_up_at,
)
from dagster_defs.resources import BronzeLake, ConsumerLagSource, MySQLSource


def freshness_targets(repository: dg.RepositoryDefinition) -> list[FreshnessTarget]:
    """Every check of the code location built by `build_freshness_check`."""
    targets = []
    for checks_def in repository.asset_checks_defs_by_key.values():
        for spec in checks_def.check_specs:
            target = FreshnessTarget.from_spec(spec)
            if target is not None and target not in targets:
                targets.append(target)
    return sorted(targets, key=lambda t: (LAYERS.index(t.layer), t.asset_key.to_user_string()))


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
    when each SLO miss still open was last sent to `alerter` (see ``freshness_alerts``). Each
    tick replaces the freshness table with its results.
    """

    @running_sensor(
        name=name,
        interval_seconds=interval_seconds,
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
        state = FreshnessCursor.parse(context.cursor)
        position, bronze_newest = state.manifest_bytes, state.bronze_newest_ms
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
                layer_newest_source_ts=layer_newest_source_ts(
                    target, context.instance, bronze_newest
                ),
                previous_caught_up=previous_caught_up_at(context.instance, target.check_key),
                consumer_lag=consumer,
            )
            events.append(outcome.evaluation(target))
            outcomes.append((target, outcome))
        texts, misses = freshness_alerts(
            outcomes, state.slo_misses_alerted_at, clock(), alert_repeat_seconds
        )
        for text in texts:
            if alerter is not None:
                alerter.send(text)
        storage = bronze_lake.access.open(bronze_lake.storage_url)
        try:
            write_freshness_table(storage, [outcome.row(target) for target, outcome in outcomes])
        except (OSError, DeltaError) as exc:
            # The check results above are reported whatever the lake's store does.
            context.log.warning(
                f"freshness table {freshness_table_uri(storage.url)} not written: {exc}"
            )
        cursor = FreshnessCursor(position, bronze_newest, misses)
        return dg.SensorResult(asset_events=events, cursor=cursor.to_json())

    return _sensor

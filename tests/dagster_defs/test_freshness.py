"""Freshness: the lag figure (pure), the check on a real temp lake with a MySQL test double,
and the sensor that evaluates every freshness check without a run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pytest

from binlake.alerts import Alerter
from binlake.freshness import measure_lag
from binlake.freshness_table import FreshnessRow, read_freshness_rows
from binlake.settings import Settings
from binlake.storage import LakeStorage
from dagster_defs.bronze.assets import build_bronze_specs
from dagster_defs.definitions import build_definitions
from dagster_defs.freshness.check import (
    FRESHNESS_CHECK,
    FRESHNESS_SENSOR_NAME,
    FreshnessTarget,
    build_freshness_check,
    freshness_note,
    judge_freshness,
)
from dagster_defs.freshness.sensor import (
    build_freshness_sensor,
    freshness_alerts,
    freshness_targets,
)
from dagster_defs.keys import GOLD_ORDERS_BY_HOUR_STATUS, bronze_key, hourly_partitions, silver_key
from dagster_defs.resources import CONSUMER_LAG, MYSQL_SOURCE, MySQLSource, build_resources
from tests.support.alerts import AlertsDouble
from tests.support.resources import consumer_lag

TABLE = "shop.orders"
ITEMS = "shop.order_items"
T0 = 1_717_236_000.0  # 2024-06-01 10:00:00 UTC, the conftest's BASE_TS_MS in seconds
CHECK_KEY = dg.AssetCheckKey(bronze_key(TABLE), FRESHNESS_CHECK)


class SourceDouble(MySQLSource):
    """The source database's last commit per table (epoch seconds); absent means NULL."""

    commits: dict[str, float]

    def last_commit_time(self, table: str) -> datetime | None:
        ts = self.commits.get(table)
        return None if ts is None else datetime.fromtimestamp(ts, UTC)

    def query(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError("the double answers last_commit_time only")


def source(**commits: float) -> SourceDouble:
    tables = {k.replace("__", "."): v for k, v in commits.items()}
    return SourceDouble(host="fake", port=0, user="fake", password="", commits=tables)


def meta(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


# -- the lag (pure) -------------------------------------------------------------------------------


def test_a_layer_holding_the_newest_commit_has_no_lag():
    lag = measure_lag(T0 + 500, {TABLE: T0}, {TABLE: T0 + 0.25})
    assert (lag.seconds, lag.at_least_seconds, lag.caught_up) == (0.0, 0.0, True)
    assert lag.caught_up_at == T0 + 500  # remembered for the next evaluation


def test_commit_times_are_compared_at_second_precision_with_a_tolerance():
    # statement started at 10.9 s (source.ts_ms), committed at 11.x s (UPDATE_TIME 11)
    assert measure_lag(T0 + 60, {TABLE: T0 + 11}, {TABLE: T0 + 10.9}).caught_up
    assert not measure_lag(T0 + 60, {TABLE: T0 + 11}, {TABLE: T0 + 9.9}).caught_up
    strict = measure_lag(T0 + 60, {TABLE: T0 + 11}, {TABLE: T0 + 10.9}, tolerance_seconds=0)
    assert not strict.caught_up and strict.seconds == pytest.approx(60 - 10.9)


def test_behind_without_history_counts_from_the_newest_change_the_layer_holds():
    lag = measure_lag(T0 + 100, {TABLE: T0 + 90}, {TABLE: T0 + 30})
    assert lag.caught_up is False and lag.reference == "layer"
    assert lag.seconds == pytest.approx(70)  # upper bound: now - L
    assert lag.at_least_seconds == pytest.approx(10)  # the commit at S is 10 s old
    assert lag.caught_up_at is None


def test_a_commit_after_a_quiet_day_is_not_a_day_of_lag_once_the_layer_was_seen_caught_up():
    # Source idle since T0 (held by the layer), checked caught up 30 s ago, commit 3 s ago.
    now = T0 + 86_400
    lag = measure_lag(now, {TABLE: now - 3}, {TABLE: T0}, caught_up_at=now - 30)
    assert lag.seconds == pytest.approx(30) and lag.reference == "caught_up_at"
    assert lag.at_least_seconds == pytest.approx(3)
    assert lag.caught_up_at == now - 30  # not caught up now: the old time is carried


def test_a_stall_on_a_busy_source_is_not_hidden_by_fresh_commits():
    now = T0 + 3600
    lag = measure_lag(now, {TABLE: now - 1}, {TABLE: T0}, caught_up_at=T0 + 5)
    assert lag.seconds == pytest.approx(3595)  # the lower bound would say 1 s
    assert lag.at_least_seconds == pytest.approx(1)


def test_the_figure_never_drops_below_the_certain_lower_bound():
    # A caught-up time after the commit the layer lacks (clock skew) is not trusted past S.
    lag = measure_lag(T0 + 100, {TABLE: T0 + 50}, {TABLE: T0}, caught_up_at=T0 + 80)
    assert lag.seconds == pytest.approx(50) and lag.reference == "source"
    # a caught-up time in the future is ignored
    lag = measure_lag(T0 + 100, {TABLE: T0 + 90}, {TABLE: T0}, caught_up_at=T0 + 500)
    assert lag.seconds == pytest.approx(100) and lag.caught_up_at is None


def test_an_empty_layer_is_behind_by_at_least_the_age_of_the_commit():
    lag = measure_lag(T0 + 100, {TABLE: T0 + 40}, {TABLE: None})
    assert lag.seconds == pytest.approx(60) and lag.reference == "source"
    assert measure_lag(T0 + 100, {TABLE: T0 + 40}, {}, caught_up_at=T0 + 20).seconds == 80


def test_an_unknown_source_commit_time_gives_no_figure_and_keeps_the_history():
    lag = measure_lag(T0 + 100, {TABLE: None}, {TABLE: T0}, caught_up_at=T0 + 50)
    assert (lag.seconds, lag.caught_up) == (None, None)
    assert lag.caught_up_at == T0 + 50


def test_several_tables_the_largest_lag_counts():
    now = T0 + 300
    lag = measure_lag(
        now,
        {TABLE: T0 + 100, ITEMS: T0 + 250, "shop.x": None},
        {TABLE: T0 + 100, ITEMS: T0 + 200},
    )
    assert lag.caught_up is False and lag.seconds == pytest.approx(100)
    assert lag.source_last_commit == T0 + 250 and lag.layer_newest_source_ts == T0 + 200
    assert [t.caught_up for t in lag.tables] == [True, False, None]
    # caught up on the tables whose commit time is known, but not known to be on the other
    partly = measure_lag(now, {TABLE: T0 + 100, ITEMS: None}, {TABLE: T0 + 100}, T0 + 7)
    assert partly.caught_up and partly.seconds == 0 and partly.caught_up_at == T0 + 7
    # one value of L for all tables (the gold asset's max_source_ts_ms): the newest commit counts
    lag = measure_lag(now, {TABLE: T0 + 100, ITEMS: T0 + 250}, {TABLE: T0 + 200, ITEMS: T0 + 200})
    assert lag.seconds == pytest.approx(100)


def test_the_verdict_compares_the_figure_with_the_slo():
    target = FreshnessTarget(bronze_key(TABLE), "bronze", 60.0, (TABLE,))
    passing = judge_freshness(target, measure_lag(T0 + 100, {TABLE: T0 + 90}, {TABLE: T0 + 40}))
    failing = judge_freshness(target, measure_lag(T0 + 100, {TABLE: T0 + 90}, {TABLE: T0 + 39}))
    assert passing.passed and not failing.passed
    m = meta(failing.metadata)
    assert m["lag_seconds"] == pytest.approx(61) and m["slo_seconds"] == 60
    assert m["lag_at_least_seconds"] == pytest.approx(10)
    assert (m["source_last_commit"], m["layer_newest_source_ts"]) == (T0 + 90, T0 + 39)
    assert m["caught_up_at"] is None and m["measured_at"] == T0 + 100
    assert "bronze is 61 s behind shop.orders (SLO 60 s, at least 10 s)" in failing.description
    assert "2024-06-01T10:01:30Z" in failing.description
    unknown = judge_freshness(target, measure_lag(T0, {TABLE: None}, {TABLE: T0}))
    assert unknown.passed and meta(unknown.metadata)["lag_seconds"] is None
    assert "UPDATE_TIME is NULL" in unknown.description


def test_a_bronze_writer_behind_by_more_than_the_slo_fails_though_files_keep_arriving():
    target = FreshnessTarget(silver_key(TABLE), "silver", 120.0, (TABLE,))
    # The source-side figure says caught up: the newest commit S is held.
    caught_up = measure_lag(T0 + 100, {TABLE: T0 + 90}, {TABLE: T0 + 90})
    behind = consumer_lag(seconds={TABLE: 150.0}, records={TABLE: 4000}).measure([TABLE])
    outcome = judge_freshness(target, caught_up, behind)
    assert not outcome.passed
    m = meta(outcome.metadata)
    assert (m["lag_seconds"], m["consumer_lag_seconds"], m["consumer_lag_records"]) == (
        150.0,
        150.0,
        "4000",
    )
    assert outcome.description.startswith(
        "silver is at least 150 s behind shop.orders (SLO 120 s): the bronze writer is 150 s "
        "behind the newest source commit in Kafka on shop.orders (4000 record(s) not in bronze)."
    )
    within = consumer_lag(seconds={TABLE: 30.0}, records={TABLE: 12}).measure([TABLE])
    assert judge_freshness(target, caught_up, within).passed
    # A larger source-side figure decides; the consumer lag is still named.
    late = measure_lag(T0 + 400, {TABLE: T0 + 90}, {TABLE: T0})
    named = judge_freshness(target, late, within)
    assert not named.passed and meta(named.metadata)["lag_seconds"] == pytest.approx(400)
    assert named.description.endswith(
        "Consumer lag: the bronze writer is 30 s behind the newest source commit in Kafka on "
        "shop.orders (12 record(s) not in bronze)."
    )
    # No topic (or no commit, or a broker that did not answer): the first figure alone.
    unknown = consumer_lag().measure([TABLE])
    assert unknown[TABLE].state == "no topic"
    alone = judge_freshness(target, caught_up, unknown)
    assert alone.passed and "consumer_lag_seconds" not in alone.metadata
    assert judge_freshness(target, caught_up, {TABLE: "unknown: broker down"}).passed


# -- no time-window policy: freshness is the lag ---------------------------------------------------


def test_no_asset_carries_a_dagster_freshness_policy_and_each_says_what_freshness_means(
    settings: Settings,
):
    # Dagster's daemon would judge a policy by time since the last materialization, which turns
    # red on a quiet source; the lag-based check is the asset's freshness.
    for spec in build_bronze_specs(settings, hourly_partitions(settings)):
        assert spec.freshness_policy is None
    graph = build_definitions(settings).resolve_asset_graph()
    keys = [bronze_key(TABLE), silver_key(TABLE), GOLD_ORDERS_BY_HOUR_STATUS]
    for key in keys:
        node = graph.get(key)
        assert node.freshness_policy is None
        assert "lag behind the newest source commit" in (node.description or "")
        assert "idle source stays fresh" in (node.description or "")
    assert all(graph.get(key).freshness_policy is None for key in graph.get_all_asset_keys())
    assert freshness_note("gold", 5).startswith("Freshness is gold's lag") and "SLO 5 min" in (
        freshness_note("gold", 5)
    )


# -- the check on a real lake ---------------------------------------------------------------------


def run_check(
    settings: Settings,
    instance: dg.DagsterInstance,
    check: dg.AssetChecksDefinition,
    mysql: MySQLSource,
) -> dg.AssetCheckEvaluation:
    result = dg.materialize(
        [*build_bronze_specs(settings, hourly_partitions(settings)), check],
        selection=dg.AssetSelection.checks(*check.check_keys),
        resources={**build_resources(settings), MYSQL_SOURCE: mysql, CONSUMER_LAG: consumer_lag()},
        instance=instance,
    )
    assert result.success
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_the_bronze_check_measures_the_manifest_against_the_source(settings, bronze):
    # Two files; the newest change bronze holds was committed at T0 + 20.
    bronze.write(TABLE, [bronze.change("c", 0, ts_ms=int(T0 * 1000), id=1, customer_id=1)])
    bronze.write(TABLE, [bronze.change("u", 1, ts_ms=int((T0 + 20) * 1000), id=1, customer_id=2)])
    now = [T0 + 500]

    def check() -> dg.AssetChecksDefinition:
        return build_freshness_check(
            bronze_key(TABLE), "bronze", 1.0, [TABLE], clock=lambda: now[0]
        )

    with dg.DagsterInstance.ephemeral() as instance:
        first = run_check(settings, instance, check(), source(shop__orders=T0 + 20))
        assert first.passed and first.severity == dg.AssetCheckSeverity.ERROR
        m = meta(first.metadata)
        assert (m["lag_seconds"], m["caught_up_at"]) == (0.0, T0 + 500)
        assert m["layer_newest_source_ts"] == T0 + 20

        # A commit at T0 + 530 not in bronze yet, 10 s later: 40 s since bronze was seen whole.
        now[0] = T0 + 540
        second = run_check(settings, instance, check(), source(shop__orders=T0 + 530))
        assert second.passed
        m = meta(second.metadata)
        assert m["lag_seconds"] == pytest.approx(40) and m["lag_at_least_seconds"] == 10
        assert m["caught_up_at"] == T0 + 500

        now[0] = T0 + 600  # still missing 70 s later
        third = run_check(settings, instance, check(), source(shop__orders=T0 + 530))
        assert not third.passed and meta(third.metadata)["lag_seconds"] == pytest.approx(100)

    with dg.DagsterInstance.ephemeral() as fresh:  # no history: counted from the newest change
        now[0] = T0 + 540
        alone = run_check(settings, fresh, check(), source(shop__orders=T0 + 530))
        assert not alone.passed and meta(alone.metadata)["lag_seconds"] == pytest.approx(520)


def test_the_bronze_check_passes_with_a_note_when_update_time_is_null(settings, bronze):
    bronze.write(TABLE, [bronze.change("c", 0, id=1, customer_id=1)])
    check = build_freshness_check(bronze_key(TABLE), "bronze", 1.0, [TABLE], clock=lambda: T0)
    with dg.DagsterInstance.ephemeral() as instance:
        evaluation = run_check(settings, instance, check, source())
    assert evaluation.passed and meta(evaluation.metadata)["lag_seconds"] is None
    assert "UPDATE_TIME is NULL" in (evaluation.description or "")


def test_every_layer_has_the_check_and_the_sensor_finds_them(settings):
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    gold = dg.AssetKey(["gold", "shop", "orders_by_hour_status"])
    assert {k for k in graph.asset_check_keys if k.name == FRESHNESS_CHECK} == {
        *(dg.AssetCheckKey(bronze_key(t), FRESHNESS_CHECK) for t in settings.tables),
        *(dg.AssetCheckKey(silver_key(t), FRESHNESS_CHECK) for t in settings.tables),
        dg.AssetCheckKey(gold, FRESHNESS_CHECK),
    }
    targets = freshness_targets(defs.get_repository_def())
    assert {(t.layer, t.slo_seconds, t.source_tables) for t in targets} == {
        *(("bronze", 60.0, (t,)) for t in settings.tables),
        *(("silver", 120.0, (t,)) for t in settings.tables),
        ("gold", 300.0, ("shop.orders", "shop.order_items")),
    }
    assert defs.resolve_sensor_def(FRESHNESS_SENSOR_NAME) is not None


def test_the_builder_refuses_an_unknown_layer_or_no_table():
    with pytest.raises(ValueError, match="layer"):
        build_freshness_check(bronze_key(TABLE), "platinum", 1.0, [TABLE])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="source table"):
        build_freshness_check(bronze_key(TABLE), "bronze", 1.0, [])


# -- the sensor -----------------------------------------------------------------------------------


def tick(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    mysql: MySQLSource,
    settings: Settings,
    now: float,
    cursor: str | None = None,
    alerter: Alerter | None = None,
) -> dg.SensorResult:
    sensor = build_freshness_sensor(
        name="test_freshness", clock=lambda: now, alerter=alerter, alert_repeat_seconds=600
    )
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        repository_def=defs.get_repository_def(),
        resources={**build_resources(settings), MYSQL_SOURCE: mysql, CONSUMER_LAG: consumer_lag()},
    )
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return result


def test_the_sensor_evaluates_every_layer_without_a_run(settings, bronze):
    bronze.write(TABLE, [bronze.change("c", 0, ts_ms=int(T0 * 1000), id=1, customer_id=1)])
    silver = build_freshness_check(silver_key(TABLE), "silver", 2.0, [TABLE])
    gold = build_freshness_check(GOLD_ORDERS_BY_HOUR_STATUS, "gold", 5.0, [TABLE, ITEMS])
    bronze_defs = build_definitions(settings)
    defs = dg.Definitions(
        assets=[
            *build_bronze_specs(settings, hourly_partitions(settings)),
            dg.AssetSpec(silver_key(TABLE)),
            dg.AssetSpec(GOLD_ORDERS_BY_HOUR_STATUS),
        ],
        asset_checks=[
            c
            for c in bronze_defs.asset_checks
            if {(k.asset_key.path[0], k.name) for k in c.check_keys}
            == {("bronze", FRESHNESS_CHECK)}
        ]
        + [silver, gold],
        resources={
            **build_resources(settings),
            MYSQL_SOURCE: source(),
            CONSUMER_LAG: consumer_lag(),
        },
    )
    mysql = source(shop__orders=T0, shop__order_items=T0 + 10)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                silver_key(TABLE), metadata={"max_source_ts_ms": int(T0 * 1000)}
            )
        )
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                GOLD_ORDERS_BY_HOUR_STATUS,
                metadata={
                    "max_source_ts_ms": int((T0 + 10) * 1000),
                    f"max_source_ts_ms/{ITEMS}": int(T0 * 1000),  # per table wins
                },
            )
        )
        first = tick(defs, instance, mysql, settings, now=T0 + 100)
        by_key = {(e.asset_key, e.check_name): e for e in first.asset_events}
        assert by_key[(bronze_key(TABLE), FRESHNESS_CHECK)].passed
        assert by_key[(silver_key(TABLE), FRESHNESS_CHECK)].passed
        gold_eval = by_key[(GOLD_ORDERS_BY_HOUR_STATUS, FRESHNESS_CHECK)]
        assert gold_eval.passed  # 100 s behind shop.order_items, SLO 300 s
        assert meta(gold_eval.metadata)["lag_seconds"] == pytest.approx(100)
        assert set(meta(gold_eval.metadata)["tables"]) == {TABLE, ITEMS}
        # shop.customers has no bronze file and a NULL UPDATE_TIME: passes with a note
        assert by_key[(bronze_key("shop.customers"), FRESHNESS_CHECK)].passed
        # runless evaluations are the checks' results in the instance
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([CHECK_KEY])[
            CHECK_KEY
        ]
        assert record.run_id == "" and record.event is not None

        # The cursor moves past the manifest; the next tick reads only what was appended.
        cursor = json.loads(first.cursor or "")
        assert cursor["bronze_newest_ms"] == {TABLE: int(T0 * 1000)}
        bronze.write(TABLE, [bronze.change("u", 1, ts_ms=int((T0 + 150) * 1000), id=1)])
        mysql = source(shop__orders=T0 + 150, shop__order_items=T0 + 10)
        second = tick(defs, instance, mysql, settings, now=T0 + 200, cursor=first.cursor)
        moved = json.loads(second.cursor or "")
        assert moved["bronze_newest_ms"] == {TABLE: int((T0 + 150) * 1000)}
        assert moved["manifest_bytes"] > cursor["manifest_bytes"]
        by_key = {(e.asset_key, e.check_name): e for e in second.asset_events}
        assert meta(by_key[(bronze_key(TABLE), FRESHNESS_CHECK)].metadata)["lag_seconds"] == 0
        # silver still holds T0 but was caught up at the first tick (T0 + 100): 100 s, SLO 120
        silver_eval = by_key[(silver_key(TABLE), FRESHNESS_CHECK)]
        assert silver_eval.passed
        assert meta(silver_eval.metadata)["lag_seconds"] == pytest.approx(100)

        # The tick replaced the freshness table with its results, one row per check.
        rows = {r.asset: r for r in read_freshness_rows(LakeStorage.from_settings(settings))}
        assert set(rows) == {e.asset_key.to_user_string() for e in second.asset_events}
        assert rows["silver/shop/orders"] == FreshnessRow(
            layer="silver",
            asset="silver/shop/orders",
            source_tables=(TABLE,),
            newest_source_commit=T0,
            lag_seconds=pytest.approx(100),
            slo_seconds=120.0,
            passed=True,
            checked_at=T0 + 200,
        )
        assert rows["bronze/shop/orders"].newest_source_commit == T0 + 150
        assert rows["bronze/shop/orders"].lag_seconds == 0.0
        gold_row = rows[GOLD_ORDERS_BY_HOUR_STATUS.to_user_string()]
        assert (gold_row.layer, gold_row.source_tables) == ("gold", (TABLE, ITEMS))
        assert (gold_row.slo_seconds, gold_row.passed) == (300.0, True)
        customers = rows["bronze/shop/customers"]  # UPDATE_TIME NULL: lag unknown, passing
        assert (customers.lag_seconds, customers.newest_source_commit) == (None, None)


def test_the_sensor_starts_over_on_a_new_lake(settings, bronze):
    bronze.write(TABLE, [bronze.change("c", 0, ts_ms=int(T0 * 1000), id=1, customer_id=1)])
    defs = build_definitions(settings)
    stale = json.dumps({"manifest_bytes": 10**9, "bronze_newest_ms": {TABLE: 1}})
    with dg.DagsterInstance.ephemeral() as instance:
        result = tick(defs, instance, source(shop__orders=T0), settings, T0 + 5, cursor=stale)
    assert json.loads(result.cursor or "")["bronze_newest_ms"] == {TABLE: int(T0 * 1000)}


def test_the_sensor_skips_without_freshness_checks(settings):
    defs = dg.Definitions(assets=[dg.AssetSpec("x")])
    sensor = build_freshness_sensor()
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(
            instance=instance,
            repository_def=defs.get_repository_def(),
            resources={
                **build_resources(settings),
                MYSQL_SOURCE: source(),
                CONSUMER_LAG: consumer_lag(),
            },
        )
        result = sensor(context)
    assert isinstance(result, dg.SkipReason)


# -- alerts on SLO misses -------------------------------------------------------------------------


def test_a_miss_is_alerted_once_repeated_late_and_its_end_said(settings, bronze):
    bronze.write(TABLE, [bronze.change("c", 0, ts_ms=int(T0 * 1000), id=1, customer_id=1)])
    defs = build_definitions(settings)
    alerts = AlertsDouble()
    late = source(shop__orders=T0 + 200)  # bronze holds T0: 200 s behind, SLO 60 s

    def about_bronze_orders() -> list[str]:  # silver and gold checks miss too, later
        return [t for t in alerts.texts if t.split(" ")[1] == CHECK_KEY.to_user_string()]

    with dg.DagsterInstance.ephemeral() as instance:
        first = tick(defs, instance, late, settings, T0 + 300, alerter=alerts)
        [text] = about_bronze_orders()
        assert text.startswith(
            f"binlake: {CHECK_KEY.to_user_string()} misses its freshness SLO (ERROR). bronze is "
        )
        cursor = first.cursor
        for now in (T0 + 330, T0 + 600):  # every tick of the same miss: no new alert
            cursor = tick(defs, instance, late, settings, now, cursor, alerts).cursor
        assert len(about_bronze_orders()) == 1
        cursor = tick(defs, instance, late, settings, T0 + 900, cursor, alerts).cursor
        assert len(about_bronze_orders()) == 2
        assert "still misses its freshness SLO" in about_bronze_orders()[1]
        bronze.write(TABLE, [bronze.change("u", 1, ts_ms=int((T0 + 200) * 1000), id=1)])
        tick(defs, instance, late, settings, T0 + 930, cursor, alerts)
        assert len(about_bronze_orders()) == 3
        assert about_bronze_orders()[2].startswith(
            f"binlake: {CHECK_KEY.to_user_string()} is within its SLO again."
        )


def test_an_idle_source_stays_green_and_a_stalled_pipeline_turns_red_and_alerts(settings, bronze):
    """Freshness is lag, not time since the last file: an hour without commits and without new
    files passes; a commit the pipeline does not take fails its SLO and alerts."""
    bronze.write(TABLE, [bronze.change("c", 0, ts_ms=int(T0 * 1000), id=1, customer_id=1)])
    defs = build_definitions(settings)
    alerts = AlertsDouble()
    idle = source(shop__orders=T0)  # the last commit is what bronze holds

    def bronze_orders(result: dg.SensorResult) -> dg.AssetCheckEvaluation:
        return next(e for e in result.asset_events if e.asset_key == bronze_key(TABLE))

    with dg.DagsterInstance.ephemeral() as instance:
        cursor = None
        for now in (T0 + 60, T0 + 1800, T0 + 3600):  # an hour of quiet: no new file at all
            result = tick(defs, instance, idle, settings, now, cursor, alerts)
            cursor = result.cursor
            assert bronze_orders(result).passed
            assert meta(bronze_orders(result).metadata)["lag_seconds"] == 0
        rows = read_freshness_rows(LakeStorage.from_settings(settings))
        assert rows is not None and all(r.passed for r in rows if r.layer == "bronze")
        assert not [t for t in alerts.texts if "bronze/shop/orders" in t.split(" ")[1]]

        # A commit at T0 + 3610 that never reaches bronze (the worker stalled).
        stalled = source(shop__orders=T0 + 3610)
        result = tick(defs, instance, stalled, settings, T0 + 3630, cursor, alerts)
        assert bronze_orders(result).passed  # 30 s behind, SLO 60 s
        result = tick(defs, instance, stalled, settings, T0 + 3700, result.cursor, alerts)
        assert not bronze_orders(result).passed  # counted from when last caught up: 100 s
        assert meta(bronze_orders(result).metadata)["lag_seconds"] == pytest.approx(100)
        row = next(
            r
            for r in read_freshness_rows(LakeStorage.from_settings(settings)) or []
            if r.asset == "bronze/shop/orders"
        )
        assert (row.passed, row.lag_seconds) == (False, pytest.approx(100))
        [alert] = [t for t in alerts.texts if t.split(" ")[1] == CHECK_KEY.to_user_string()]
        assert "misses its freshness SLO" in alert


def test_freshness_alerts_are_pure_transitions():
    target = FreshnessTarget(bronze_key(TABLE), "bronze", 60.0, (TABLE,))
    key = target.check_key.to_user_string()
    miss = judge_freshness(target, measure_lag(T0 + 100, {TABLE: T0 + 90}, {TABLE: T0}))
    ok = judge_freshness(target, measure_lag(T0 + 100, {TABLE: T0}, {TABLE: T0}))
    assert not miss.passed and ok.passed
    texts, open_misses = freshness_alerts([(target, miss)], {}, T0 + 100, 600)
    assert len(texts) == 1 and open_misses == {key: T0 + 100}
    assert freshness_alerts([(target, miss)], open_misses, T0 + 699, 600) == ([], open_misses)
    assert freshness_alerts([(target, ok)], {}, T0 + 100, 600) == ([], {})
    texts, open_misses = freshness_alerts([(target, ok)], {key: T0}, T0 + 100, 600)
    assert "within its SLO again" in texts[0] and open_misses == {}

"""The `binlake` command line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from confluent_kafka import KafkaException
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from binlake import jvm_artifacts
from binlake.bronze.replay import ReplayPlan, apply_replay, plan_replay_request
from binlake.errors import BinlakeError
from binlake.local_stack.stack import LocalStack
from binlake.settings import Settings, load_settings
from binlake.silver.pii import PiiPolicy
from binlake.silver.resync import (
    ResyncProgress,
    give_up,
    request_resync,
    resync_added_tables,
    resync_in_progress,
    wait_for_completion,
)
from cdc.connect_client import ConnectClient
from cdc.connector_config import build_connector_config, request_limit_bytes
from cdc.topic_limits import raise_topic_limits
from compactor.run import plan_pass, run_compaction

# The few imports left inside commands are there only so that `binlake --help` and the other
# commands do not load what one command needs: binlake.status and binlake.demo load Dagster,
# streams.app loads Faust, the rebuild's engine loads Delta Lake.
app = typer.Typer(
    help="binlake: a MySQL binlog turned into a lake minutes behind its source.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
connector_app = typer.Typer(
    help="Manage the Debezium connector through the Kafka Connect REST API.", no_args_is_help=True
)
app.add_typer(connector_app, name="connector")
console = Console(soft_wrap=True)  # paths and names are never split across lines
err_console = Console(stderr=True, soft_wrap=True)


def _settings(*, object_store: bool = False) -> Settings:
    """The settings from the environment; `object_store` sets local.object_store (the
    commands' `--object-store`)."""
    try:
        settings = load_settings()
    except ValidationError as exc:
        err_console.print(f"[red]invalid settings[/red]:\n{exc}")
        raise typer.Exit(2) from exc
    if object_store:
        local = settings.local.model_copy(update={"object_store": True})
        settings = settings.model_copy(update={"local": local})
    return settings


ObjectStoreOption = Annotated[
    bool,
    typer.Option(
        "--object-store",
        help="Keep the lake on a local S3 server (SeaweedFS) instead of the state directory "
        "(as setting local.object_store).",
    ),
]


def _stack_settings() -> Settings:
    """Settings of the running local stack (its resolved ports), else the configured ones."""

    return LocalStack(_settings()).settings


@app.command()
def setup(
    record_checksums: Annotated[
        bool,
        typer.Option(
            "--record-checksums",
            help="After changing a version in deploy/jvm/pom.xml: pin what Maven resolves.",
        ),
    ] = False,
) -> None:
    """Resolve what the local stack needs beyond Python with Maven (Kafka, Connect, Debezium,
    Apicurio Registry), pinned by checksum, into a shared cache; offline once cached."""

    settings = _settings()
    if record_checksums:
        path = jvm_artifacts.record_checksums(maven=settings.local.maven)
        console.print(f"pinned what Maven resolved in {path}: review the diff before committing")
    try:
        artifacts = jvm_artifacts.ensure_jvm_artifacts(
            settings.local.jvm_cache_dir, maven=settings.local.maven
        )
    except BinlakeError as exc:
        err_console.print(f"[red]binlake setup failed[/red]: {exc}")
        raise typer.Exit(1) from exc
    console.print(f"Kafka, Kafka Connect, Debezium and Apicurio Registry ready in {artifacts.root}")


@app.command()
def up(
    no_dagster: Annotated[bool, typer.Option("--no-dagster", help="Skip Dagster.")] = False,
    object_store: ObjectStoreOption = False,
) -> None:
    """Start the local stack (MariaDB, Kafka, Connect + Debezium, bronze worker, Dagster)."""

    stack = LocalStack(_settings(object_store=object_store))
    try:
        with console.status("starting") as status:
            started = stack.up(with_dagster=not no_dagster, progress=status.update)
    except BinlakeError as exc:
        err_console.print(f"[red]binlake up failed[/red]: {exc}")
        raise typer.Exit(1) from exc
    for component in started:
        console.print(f"  {component.name:<18} up in {component.seconds:5.1f} s")
    _print_addresses(stack.settings)


def _print_addresses(settings: Settings) -> None:
    console.print(
        f"MySQL source   {settings.mysql.host}:{settings.mysql.port} (user {settings.mysql.user})"
    )
    console.print(f"Kafka          {settings.kafka.bootstrap_servers}")
    console.print(f"Kafka Connect  {settings.connect.url}")
    console.print(f"Lake           {settings.lake_url}")
    if settings.storage.endpoint_url:
        console.print(f"S3 endpoint    {settings.storage.endpoint_url}")
    console.print(f"Dagster UI     http://{settings.dagster.host}:{settings.dagster.port}")
    console.print(f"SQL endpoint   http://{settings.sql.host}:{settings.sql.port} (binlake sql)")
    console.print(f"Logs           {settings.state_dir.resolve() / 'logs'}")
    console.print("Stop with      binlake down")


@app.command()
def down() -> None:
    """Stop everything `binlake up` started under this state directory."""

    stack = LocalStack(_settings())
    if stack.down():
        console.print("stopped")
    else:
        console.print(f"nothing running under {stack.settings.state_dir}")


WATCH_DEFAULT_SECONDS = 5.0


@app.command()
def status(
    seconds: Annotated[
        float | None,
        typer.Argument(
            metavar="[SECONDS]", help="With --watch: seconds between redraws (default 5).", min=0.5
        ),
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Redraw the page every SECONDS until Ctrl-C.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """The health page: components, the connector and its tasks, each layer's lag behind the
    source (seconds and records), per table source rows, the bronze writer's lag and silver rows,
    the newest gold hour, failing checks, and the Dagster UI and SQL endpoint addresses. Each part
    that cannot be reached says so ("down: run `binlake up`")."""

    from binlake.status import collect_health_page, page_json
    from binlake.status_page import render_page, watch_page

    if seconds is not None and not watch:
        err_console.print("[red]SECONDS goes with --watch[/red]: binlake status --watch [SECONDS]")
        raise typer.Exit(2)
    stack = LocalStack(_settings())
    if as_json:
        console.print_json(json.dumps(page_json(collect_health_page(stack)), default=str))
        return
    if not watch:
        console.print(render_page(collect_health_page(stack)), soft_wrap=False)
        return
    try:
        watch_page(lambda: collect_health_page(stack), console, seconds or WATCH_DEFAULT_SECONDS)
    except KeyboardInterrupt:
        console.print("stopped watching")


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


@app.command()
def worker() -> None:
    """Run the Faust bronze worker in the foreground (what `binlake up` supervises)."""
    from streams.app import main as run_worker

    run_worker()


@app.command()
def replay(
    table: Annotated[
        str, typer.Option("--table", help="The <db>.<table> whose topic is replayed.")
    ],
    from_time: Annotated[
        str | None,
        typer.Option(
            "--from-time",
            help="Every partition from its first record at or after this time: ISO 8601 "
            "(UTC unless it has an offset) or epoch milliseconds.",
        ),
    ] = None,
    from_offset: Annotated[
        str | None,
        typer.Option("--from-offset", help="P:O[,P:O...]: these partitions from these offsets."),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option("--group", help="Consumer group to reset; default the bronze writer's."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print current and target offsets; change nothing.")
    ] = False,
) -> None:
    """Reset a consumer group of one table's topic to a time or to offsets (a replay).

    Stop the group's consumers first. For the bronze writer's group, offsets bronze holds are
    skipped when read again and lost bronze files are written again: never a duplicate.
    """

    settings = _stack_settings()
    try:
        plan = plan_replay_request(
            settings, table, from_time=from_time, from_offset=from_offset, group=group
        )
        _print_replay_plan(plan)
        if dry_run:
            if plan.members.active:
                err_console.print(f"[yellow]not applicable now[/yellow]: {plan.members.refusal()}")
            console.print("dry run: nothing changed")
            return
        apply_replay(plan, settings)
    except (BinlakeError, KafkaException) as exc:
        err_console.print(f"[red]binlake replay failed[/red]: {exc}")
        raise typer.Exit(1) from exc
    console.print(f"consumer group {plan.group} reset on {plan.topic}")


def _print_replay_plan(plan: ReplayPlan) -> None:
    grid = Table("partition", "current", "target", "note", title=f"{plan.group} on {plan.topic}")
    for p in plan.partitions:
        grid.add_row(str(p.partition), _or_dash(p.current), str(p.target), p.note)
    console.print(grid)
    rewritten = [path for p in plan.partitions for path in p.rewritten_files]
    for path in rewritten[:10]:
        console.print(f"  to write again: {path}")
    if len(rewritten) > 10:
        console.print(f"  ... and {len(rewritten) - 10} more")


@app.command()
def rebuild(
    table: Annotated[str, typer.Option("--table", help="The <db>.<table> to rebuild.")],
    as_of: Annotated[
        str,
        typer.Option(
            "--as-of",
            help="A binlog position FILE:POS as SHOW MASTER STATUS gives it (changes before it), "
            "a source commit time (ISO 8601, UTC unless it has an offset; inclusive) or Kafka "
            "offsets (P:O[,P:O...], or a bare offset of partition 0; inclusive).",
        ),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON line.")
    ] = False,
) -> None:
    """Build silver of one table as it stood at a moment, from bronze alone.

    Written as a Delta table of its own under <lake>/rebuilds/; live silver is never touched.
    """
    from binlake.bronze.reader import BronzeReader
    from binlake.silver.rebuild import AsOf, rebuild_silver
    from binlake.silver.tables import SilverTables
    from binlake.storage import LakeStorage

    settings = _settings()
    if table not in settings.tables:
        err_console.print(
            f"[red]unknown table[/red] {table!r}; the captured tables are {settings.tables}"
        )
        raise typer.Exit(2)
    try:
        lake = LakeStorage.from_settings(settings)
        rebuilt = rebuild_silver(
            BronzeReader(lake),
            SilverTables.of(lake),
            PiiPolicy.from_settings(settings.silver),
            table,
            AsOf.parse(as_of),
        )
    except BinlakeError as exc:
        err_console.print(f"[red]binlake rebuild failed[/red]: {exc}")
        raise typer.Exit(1) from exc
    result = {
        "table": table,
        "as_of": as_of,
        "uri": rebuilt.table.uri,
        "changes_read": rebuilt.changes_read,
        "rows": rebuilt.rows,
        "tombstones": rebuilt.tombstones,
    }
    if as_json:
        print(json.dumps(result))
        return
    console.print(
        f"{table} as of {as_of}: {rebuilt.rows} live rows (+{rebuilt.tombstones} deleted keys "
        f"kept as tombstones) from {rebuilt.changes_read} changes, written to {rebuilt.table.uri}"
    )


@app.command()
def resync(
    table: Annotated[str, typer.Option("--table", help="The <db>.<table> to read again.")],
    reason: Annotated[
        str, typer.Option(help="Why; kept in the resync's record.")
    ] = "binlake resync",
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait until Debezium has read the table.")
    ] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for Debezium at most.")] = 3600.0,
    abandon: Annotated[
        bool,
        typer.Option(
            "--abandon",
            help="Stop waiting for the table's resync in progress (e.g. Debezium never acted on "
            "its signal) so that a new one can start; starts none.",
        ),
    ] = False,
) -> None:
    """Read a table again from the source while streaming goes on (Debezium incremental snapshot).

    The re-read rows reach bronze as snapshot reads; once silver has merged them, silver's
    sweep removes the rows the source no longer has, and silver equals the source.
    """

    settings = _stack_settings()
    if table not in settings.tables:
        err_console.print(
            f"[red]unknown table[/red] {table!r}; the captured tables are {settings.tables}"
        )
        raise typer.Exit(2)
    if abandon:
        running = resync_in_progress(settings, table)
        if running is None:
            console.print(f"no resync of {table} is in progress")
            return
        give_up(settings, running, "ABANDONED")
        console.print(f"resync {running.request.id} of {table} ({running.stage}) abandoned")
        return
    began = time.monotonic()
    try:
        request = request_resync(settings, table, reason=reason)
        console.print(
            f"resync {request.id} of {table} requested at binlog {request.signal_position}"
        )
        if not wait:
            return
        with console.status("waiting for Debezium") as status:

            def show(progress: ResyncProgress) -> None:
                if progress.last_processed_key is not None:
                    status.update(
                        f"Debezium read {table} up to key {progress.last_processed_key} of "
                        f"{progress.maximum_key}"
                    )

            completion = wait_for_completion(settings, request, timeout_s=timeout, on_progress=show)
    except BinlakeError as exc:
        err_console.print(f"[red]binlake resync failed[/red]: {exc}")
        raise typer.Exit(1) from exc
    seconds = time.monotonic() - began
    if not completion.succeeded:
        err_console.print(f"[red]resync {request.id} ended {completion.status}[/red]")
        raise typer.Exit(1)
    rows = completion.rows_scanned or 0
    console.print(
        f"Debezium read {rows} rows of {table}, all in Kafka {seconds:.1f} s after the signal "
        f"({rows / max(seconds, 1e-9):.0f} rows/s); silver removes the rows the source no longer "
        "has once it has merged them"
    )


@app.command()
def compact(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the closed hours that would be compacted.")
    ] = False,
) -> None:
    """Compact the closed hours of bronze and delete replaced files past their retention.

    What the `bronze_compaction` Dagster job runs; safe beside it (the swap is one manifest line
    under the manifest's lock) and beside the bronze worker.
    """

    settings = _settings()
    if dry_run:
        plan = plan_pass(settings)
        expiring, groups = plan.expiring, plan.groups
        for entry in expiring:
            console.print(
                f"  would expire {entry.path} (offsets {entry.first_offset}..{entry.last_offset})"
            )
        for group in groups:
            console.print(f"  would compact {group}")
        console.print(
            f"{len(expiring)} file(s) to expire, {len(groups)} group(s) of closed hours to "
            "compact; nothing changed"
        )
        return
    report = run_compaction(settings)
    console.print_json(json.dumps(report.summary()))
    if report.failed:
        raise typer.Exit(1)


@app.command()
def demo(
    duration: Annotated[float, typer.Option(help="Seconds of workload.")] = 30.0,
    rate: Annotated[float, typer.Option(help="Target source transactions per second.")] = 20.0,
    summary_json: Annotated[Path | None, typer.Option(help="Also write the summary here.")] = None,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the stack afterwards.")] = False,
    catch_up_timeout: Annotated[
        float, typer.Option(help="Max seconds to wait for the lake.")
    ] = 300.0,
    seed: Annotated[int, typer.Option(help="Workload random seed.")] = 7,
    object_store: ObjectStoreOption = False,
) -> None:
    """Start the stack, run a shop workload, wait for the lake to catch up, print a summary."""
    from binlake.demo.runner import run_demo

    settings = _settings(object_store=object_store)
    summary = run_demo(
        settings,
        duration_s=duration,
        rate_per_s=rate,
        catch_up_timeout_s=catch_up_timeout,
        seed=seed,
        console=console,
    )
    if summary_json:
        summary_json.write_text(json.dumps(summary.as_json(), indent=2, default=str))
        console.print(f"summary written to {summary_json}")
    if stop:
        LocalStack(settings).down()
        console.print("stack stopped")
    if not summary.lake_equals_source:
        raise typer.Exit(1)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SELECT, SHOW or DESCRIBE over the lake's views.")],
    database: Annotated[str, typer.Option(help="Database of unqualified names.")] = "lake",
) -> None:
    """Run one query over the lake's SQL views (lake.<db>__<table>, lake.gold__<name>,
    lake.freshness) and print the answer as a table. Runs in this process with the same views
    and restrictions as the SQL endpoint of `binlake up` (needs the `sql` extra: chDB)."""
    from binlake.sql.engine import LakeEngine, QueryFailed
    from binlake.sql.guard import RefusedQuery

    engine = LakeEngine(_settings())
    try:
        result = engine.query(query, output_format="JSONCompact", database=database)
    except (RefusedQuery, QueryFailed) as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        engine.close()
    if result.format != "JSONCompact":
        console.out(result.data.decode(errors="replace"), end="")
        return
    answer = json.loads(result.data)
    table = Table(*(column["name"] for column in answer["meta"]))
    for row in answer["data"]:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    console.print(table)
    console.print(f"{answer['rows']} rows (in process, chDB {engine.version})")


@app.command("sql-endpoint")
def sql_endpoint() -> None:
    """Serve the lake's SQL views over ClickHouse's HTTP interface (foreground; `binlake up`
    runs it): sql.host, sql.port, user sql.user with sql.password, read-only."""
    from binlake.sql.engine import LakeEngine
    from binlake.sql.http_endpoint import serve

    settings = _settings()
    server = serve(LakeEngine(settings), settings.sql)
    host, port = server.server_address[:2]
    console.print(f"SQL endpoint listening on http://{host}:{port} (user {settings.sql.user})")
    server.serve_forever()


@connector_app.command("register")
def connector_register() -> None:
    """Create or update the connector from settings (idempotent)."""

    settings = _stack_settings()
    client = ConnectClient(settings.connect.url)
    client.wait_until_ready(settings.local.startup_timeout_seconds)
    previous = client.get_config(settings.connect.connector_name)
    config = build_connector_config(settings)
    for topic, before in raise_topic_limits(
        settings.kafka.bootstrap_servers, settings.kafka.topic_prefix, request_limit_bytes(settings)
    ).items():
        console.print(f"{topic}: max.message.bytes raised from {before:,}")
    changed = client.put_connector(settings.connect.connector_name, config)
    console.print(f"{settings.connect.connector_name}: {'updated' if changed else 'unchanged'}")
    # Tables new to the connector stream from now on; a resync brings their existing rows.
    for request in resync_added_tables(settings, previous, config):
        console.print(f"resync {request.id} of newly captured {request.table} requested")


@connector_app.command("status")
def connector_status() -> None:
    """Connector and task states."""

    settings = _stack_settings()
    console.print(ConnectClient(settings.connect.url).get_status(settings.connect.connector_name))


def _connector_action(action: str) -> None:

    settings = _stack_settings()
    getattr(ConnectClient(settings.connect.url), action)(settings.connect.connector_name)
    console.print(f"{settings.connect.connector_name}: {action} requested")


@connector_app.command("restart")
def connector_restart() -> None:
    """Restart the connector and its tasks."""
    _connector_action("restart")


@connector_app.command("pause")
def connector_pause() -> None:
    """Pause capturing."""
    _connector_action("pause")


@connector_app.command("resume")
def connector_resume() -> None:
    """Resume capturing."""
    _connector_action("resume")


@app.command("sql-apply-views")
def sql_apply_views(
    url: Annotated[str, typer.Option(help="The ClickHouse server's HTTP interface.")] = (
        "http://127.0.0.1:8123"
    ),
    user: Annotated[str, typer.Option(help="The user the views are created as (DEFINER).")] = (
        "binlake"
    ),
    password: Annotated[
        str,
        typer.Option(
            envvar="CLICKHOUSE_PASSWORD", show_default=False, help="That user's password."
        ),
    ] = "",
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep applying as new tables appear in the lake.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between checks with --watch.")] = 30.0,
    refresh: Annotated[
        float,
        typer.Option(
            help="With --watch, apply again after this many seconds even if unchanged "
            "(picks up columns added to Delta tables)."
        ),
    ] = 900.0,
) -> None:
    """Create or replace the lake's views on a ClickHouse server (`lake.*`), from the settings."""
    import logging
    import threading

    import httpx

    from binlake.sql import server_sync
    from binlake.sql.views import lake_views, render_views_sql

    settings = _settings()

    def render() -> str:
        return render_views_sql(lake_views(settings, target="server"), target="server")

    def report(result: server_sync.SyncResult) -> None:
        console.print(
            f"{result.views} view(s) over {result.sources} Delta table(s) applied at {url}"
            + (f"; dropped {', '.join(result.dropped)}" if result.dropped else "")
        )

    if not password:
        err_console.print(f"[red]no password for {user}: set CLICKHOUSE_PASSWORD[/red]")
        raise typer.Exit(2)
    client = server_sync.ClickHouseHttp(url, user, password)
    try:
        if watch:
            logging.basicConfig(level=logging.INFO)
            server_sync.watch(
                render,
                client,
                interval_s=interval,
                refresh_s=refresh,
                stop=threading.Event(),
                on_applied=report,
            )
            return
        report(server_sync.apply_plan(client, server_sync.plan_server_views(render())))
    except (server_sync.ViewSyncError, httpx.TransportError) as exc:
        err_console.print(f"[red]views not applied at {url}: {exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        client.close()

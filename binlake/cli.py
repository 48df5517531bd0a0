"""The `binlake` command line."""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import click
import httpx
import pymysql
import typer
from confluent_kafka import KafkaException
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from binlake import jvm_artifacts
from binlake.bronze.replay import (
    ReplayPlan,
    RereadPreview,
    apply_replay,
    plan_replay_request,
    preview_reread,
)
from binlake.consumer_groups import LIBRDKAFKA_LOG
from binlake.errors import BinlakeError, ReplayError
from binlake.local_stack.components import BRONZE_WORKER
from binlake.local_stack.reachability import Service, advice, unreachable
from binlake.local_stack.stack import LocalStack
from binlake.local_stack.supervisor import PREVIOUS_LOGS
from binlake.local_stack.worker_pause import bronze_worker_stopped
from binlake.settings import Settings, load_settings
from binlake.settings_errors import CONFIG_FILE_ENV, InvalidSettings, validation_problems
from binlake.silver.pii import PiiPolicy
from binlake.silver.resync import (
    ResyncProgress,
    give_up,
    request_resync,
    resync_added_tables,
    resync_in_progress,
    wait_for_completion,
)
from cdc.connect_client import ConnectClient, ConnectHTTPError
from cdc.connector_config import build_connector_config, request_limit_bytes
from cdc.topic_limits import raise_topic_limits
from compactor.run import plan_pass, run_compaction

# The few imports left inside commands are there only so that `binlake --help` and the other
# commands do not load what one command needs: binlake.status and binlake.demo load Dagster,
# streams.app loads Faust, the rebuild's engine loads Delta Lake.
# What a client raises when the service it talks to is not there (or went away mid-command),
# and which service that is (None: any).
_SERVICE_ERRORS: dict[type[Exception], Service | None] = {
    KafkaException: Service.KAFKA,
    ConnectHTTPError: Service.CONNECT,
    pymysql.err.OperationalError: Service.MYSQL,
    httpx.TransportError: None,
}


class _AdvisingGroup(TyperGroup):
    """Runs a command with librdkafka's log silenced and, if a service it needs is not there,
    says in one line what is down and what to run instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        LIBRDKAFKA_LOG.setLevel(logging.CRITICAL + 1)  # the CLI says what is down, once
        try:
            return super().invoke(ctx)
        except tuple(_SERVICE_ERRORS) as exc:
            _explain_failure(ctx, exc)
            raise typer.Exit(1) from exc


app = typer.Typer(
    cls=_AdvisingGroup,
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
    commands' `--object-store`). Invalid ones: one line per problem, exit status 2."""
    try:
        settings = load_settings()
    except InvalidSettings as exc:
        _print_setting_problems(exc.problems)
        raise typer.Exit(2) from exc
    except ValidationError as exc:
        _print_setting_problems(
            validation_problems(
                exc, Settings, os.environ, config_file=os.environ.get(CONFIG_FILE_ENV)
            )
        )
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


def _print_setting_problems(problems: list[str]) -> None:
    for problem in problems:
        err_console.print(f"[red]invalid setting[/red] {escape(problem)}")


def _stack_settings(*needs: Service) -> Settings:
    """Settings of the running local stack (its resolved ports), else the configured ones; if a
    service in `needs` does not answer, one line saying which and what to run, exit status 1."""

    stack = LocalStack(_settings())
    down = unreachable(stack.settings, needs)
    if down:
        err_console.print(
            f"[red]{escape(advice(stack.settings, down, stack_running=stack.is_running()))}[/red]"
        )
        raise typer.Exit(1)
    return stack.settings


def _explain_failure(ctx: click.Context, exc: Exception) -> None:
    """One line for a command that failed on a service: if the service does not answer, which
    and what to run; else the error itself."""
    service = next(
        (service for kind, service in _SERVICE_ERRORS.items() if isinstance(exc, kind)), None
    )
    stack = LocalStack(load_settings())
    down = unreachable(stack.settings, tuple(Service) if service is None else (service,))
    if down:
        message = advice(stack.settings, down, stack_running=stack.is_running())
    else:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    command = f"binlake {ctx.invoked_subcommand or ''}".strip()
    err_console.print(f"[red]{escape(command)} failed[/red]: {escape(message)}")


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
    logs = settings.state_dir.resolve() / "logs"
    console.print(f"Logs           {logs} (the previous run's in {logs / PREVIOUS_LOGS})")
    console.print("Stop with      binlake down")


@app.command()
def down() -> None:
    """Stop everything `binlake up` started under this state directory: the bronze worker,
    then Dagster, Kafka Connect, the broker and MariaDB, each once the one before has exited."""

    stack = LocalStack(_settings())
    began = time.monotonic()

    def stopped(names: list[str], seconds: float) -> None:
        console.print(f"  {', '.join(names):<48} stopped in {seconds:4.1f} s")

    if stack.down(on_stopped=stopped):
        console.print(f"stopped in {time.monotonic() - began:.1f} s")
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

    LIBRDKAFKA_LOG.setLevel(logging.NOTSET)  # a service logs librdkafka like anything else
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
        bool,
        typer.Option(
            "--dry-run",
            help="Print, per partition, the current and target offsets, the records that would "
            "be read again and their source commit times; change nothing.",
        ),
    ] = False,
    stop_worker: Annotated[
        bool,
        typer.Option(
            "--stop-worker",
            help="Stop the local stack's bronze worker for the reset and start it again after "
            "(also when the reset fails).",
        ),
    ] = False,
) -> None:
    """Reset a consumer group of one table's topic to a time or to offsets (a replay).

    The group's consumers must be stopped: for the bronze writer of `binlake up`, add
    --stop-worker (or `binlake stop worker` ... `binlake start worker`). For the bronze writer's
    group, offsets bronze holds are skipped when read again and lost bronze files are written
    again: never a duplicate.
    """

    settings = _stack_settings(Service.KAFKA)

    def plan_now() -> ReplayPlan:
        return plan_replay_request(
            settings, table, from_time=from_time, from_offset=from_offset, group=group
        )

    try:
        plan = plan_now()  # bad input fails here, before the worker is touched
        if stop_worker and not plan.bronze_writer:
            raise ReplayError(
                f"--stop-worker stops the bronze worker (group {settings.bronze.app_id!r}); "
                f"stop the consumers of {plan.group!r} yourself"
            )
        if dry_run:
            _print_replay_plan(plan, preview_reread(plan, settings))
            if stop_worker:
                console.print("the bronze worker would be stopped for the reset, then started")
            elif plan.members.active:
                err_console.print(
                    f"[yellow]not applicable now[/yellow]: {escape(plan.members.refusal())}"
                    + (" Or add --stop-worker." if plan.bronze_writer else "")
                )
            console.print("dry run: nothing changed")
            return
        if not stop_worker:
            _print_replay_plan(plan)
            apply_replay(plan, settings)
        else:
            with bronze_worker_stopped(LocalStack(settings), progress=console.print):
                plan = plan_now()  # the worker committed more before it stopped
                _print_replay_plan(plan)
                apply_replay(plan, settings)
    except (BinlakeError, KafkaException) as exc:
        err_console.print(f"[red]binlake replay failed[/red]: {escape(str(exc))}")
        raise typer.Exit(1) from exc
    console.print(f"consumer group {plan.group} reset on {plan.topic}")


def _print_replay_plan(plan: ReplayPlan, previews: tuple[RereadPreview, ...] = ()) -> None:
    columns = ["partition", "current", "target"]
    if previews:
        columns += ["records", "source commits (UTC)"]
    grid = Table(*columns, title=f"{plan.group} on {plan.topic}")
    by_partition = {p.partition: p for p in previews}
    for p in plan.partitions:
        row = [str(p.partition), _or_dash(p.current), str(p.target)]
        preview = by_partition.get(p.partition)
        if preview is not None:
            row += [preview.records_text, _commit_span(preview)]
        grid.add_row(*row)
    console.print(grid)
    for p in plan.partitions:
        if p.note:
            console.print(f"  partition {p.partition}: {p.note}")
    rewritten = [path for p in plan.partitions for path in p.rewritten_files]
    for path in rewritten[:10]:
        console.print(f"  to write again: {path}")
    if len(rewritten) > 10:
        console.print(f"  ... and {len(rewritten) - 10} more")
    if previews:
        records = sum(p.records for p in previews)
        exact = all(p.exact for p in previews)
        console.print(
            f"{'' if exact else 'at least '}{records} record(s) would be read again "
            "(bronze skips the offsets it holds)"
        )


def _commit_span(preview: RereadPreview) -> str:
    """The first and last source commit, the day written once if it is the same."""
    if preview.first_commit_ms is None or preview.last_commit_ms is None:
        return "-"
    first = datetime.fromtimestamp(preview.first_commit_ms / 1000, UTC)
    last = datetime.fromtimestamp(preview.last_commit_ms / 1000, UTC)
    end = f"{last:%H:%M:%S}" if last.date() == first.date() else f"{last:%Y-%m-%d %H:%M:%S}"
    return f"{first:%Y-%m-%d %H:%M:%S} to {end}"


@app.command()
def stop(
    component: Annotated[
        str, typer.Argument(help="A component `binlake status` lists; `worker`: bronze-worker.")
    ],
) -> None:
    """Stop one component of the local stack (e.g. the bronze worker before a replay); `binlake
    start COMPONENT` or `binlake up` starts it again."""
    stack, name = _component(component)
    if stack.stop(name):
        console.print(f"{name} stopped")
    else:
        console.print(f"{name} was not running")


@app.command()
def start(
    component: Annotated[
        str, typer.Argument(help="A component `binlake status` lists; `worker`: bronze-worker.")
    ],
) -> None:
    """Start one stopped component of the running local stack again."""
    stack, name = _component(component)
    try:
        stack.start(name)
    except BinlakeError as exc:
        err_console.print(f"[red]binlake start failed[/red]: {escape(str(exc))}")
        raise typer.Exit(1) from exc
    console.print(f"{name} running")


def _component(given: str) -> tuple[LocalStack, str]:
    """The running stack and the supervised program `given` names (`worker`: the bronze
    worker); one line and exit status 1 if there is no stack or no such component."""
    stack = LocalStack(_settings())
    if not stack.is_running():
        err_console.print(
            f"[red]the local stack under {stack.settings.state_dir} is not running[/red]: "
            "start it with `binlake up`"
        )
        raise typer.Exit(1)
    name = BRONZE_WORKER if given == "worker" else given
    names = [c.name for c in stack.components()]
    if name not in names:
        err_console.print(
            f"[red]no component {given!r}[/red]; the stack has: {', '.join(names)} (and "
            "`worker` for bronze-worker)"
        )
        raise typer.Exit(2)
    return stack, name


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

    # No probe first: refusals that need only the lake come before any service is asked, and
    # a service that does not answer is named by the app's error handling.
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
    summary_json: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the summary (also when the demo fails or is interrupted); "
            "default <state_dir>/demo-summary.json."
        ),
    ] = None,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the stack afterwards.")] = False,
    catch_up_timeout: Annotated[
        float, typer.Option(help="Max seconds to wait for the lake.")
    ] = 300.0,
    seed: Annotated[int, typer.Option(help="Workload random seed.")] = 7,
    object_store: ObjectStoreOption = False,
) -> None:
    """Start the stack, run a shop workload, wait for the lake to catch up, print a summary."""
    from binlake.demo.runner import SUMMARY_FILE, run_demo

    settings = _settings(object_store=object_store)
    try:
        summary = run_demo(
            settings,
            duration_s=duration,
            rate_per_s=rate,
            catch_up_timeout_s=catch_up_timeout,
            seed=seed,
            console=console,
            summary_path=summary_json or settings.state_dir / SUMMARY_FILE,
        )
    except BinlakeError as exc:
        err_console.print(f"[red]binlake demo failed[/red]: {escape(str(exc))}")
        raise typer.Exit(1) from exc
    finally:
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

    settings = _stack_settings(Service.CONNECT, Service.KAFKA)
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

    settings = _stack_settings(Service.CONNECT)
    console.print(ConnectClient(settings.connect.url).get_status(settings.connect.connector_name))


def _connector_action(action: str) -> None:

    settings = _stack_settings(Service.CONNECT)
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

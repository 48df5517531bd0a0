"""`binlake status` rendered: the health page (`binlake.status.HealthPage`) as rich renderables
that read at 80 columns, once or redrawn every few seconds (`watch`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from binlake.status import (
    CaptureStatus,
    Endpoint,
    FailingCheck,
    GoldHour,
    HealthPage,
    LakeLag,
    TableStatus,
    Unavailable,
)

DESCRIPTION_CHARS = 200  # of a failing check's description; the Dagster UI has the rest


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} s"


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def _grid(*columns: str) -> Table:
    return Table(*columns, box=box.SIMPLE_HEAD, pad_edge=False)


def _section(title: str, *body: RenderableType) -> Group:
    # A title of its own line, not the table's: a table's title wraps at the table's width.
    return Group(Text(title, style="bold"), *body)


def _unavailable(title: str, part: Unavailable) -> Text:
    return Text.assemble((f"{title}: ", "bold"), (part.reason, "yellow"))


def render_components(page: HealthPage) -> RenderableType:
    if isinstance(page.components, Unavailable):
        return _unavailable("components", page.components)
    grid = _grid("component", "state", "pid", "uptime")
    for c in page.components:
        color = "green" if c.state == "RUNNING" else "red"
        grid.add_row(
            c.name, f"[{color}]{c.state}[/{color}]", str(c.pid or ""), _seconds(c.uptime_s)
        )
    return _section("components", grid)


def render_capture(capture: CaptureStatus | Unavailable) -> RenderableType:
    if isinstance(capture, Unavailable):
        return _unavailable("capture", capture)
    color = "red" if capture.capture_stopped else "green"
    grid = _grid("connector / task", "state", "worker", "last error")
    grid.columns[3].overflow = "fold"
    grid.add_row(
        capture.connector,
        f"[{color}]{capture.state}[/{color}]",
        "",
        capture.error if capture.state in ("FAILED", "UNREACHABLE", "MISSING") else "",
    )
    for task in capture.tasks:
        task_color = "green" if task.state == "RUNNING" else "red"
        grid.add_row(
            f"  task {task.id}",
            f"[{task_color}]{task.state}[/{task_color}]",
            task.worker_id,
            task.error or "",
        )
    restarts = f" ({capture.restarts} restart(s) by the health sensor)" if capture.restarts else ""
    return _section("capture", grid, Text(capture.stopped_text() + restarts, style=color))


def render_lag(lag: LakeLag | Unavailable, now: float) -> RenderableType:
    if isinstance(lag, Unavailable):
        return _unavailable("lag behind the source", lag)
    age = max(0.0, now - lag.checked_at)
    grid = _grid("layer", "lag", "SLO", "records", "checks")
    for layer in lag.layers:
        failing = layer.failing > 0
        color = "red" if failing else "green"
        checks = f"{layer.failing} of {layer.checks} failing" if failing else f"{layer.checks} ok"
        grid.add_row(
            layer.layer,
            f"[{color}]{_seconds(layer.lag_seconds)}[/{color}]",
            _seconds(layer.slo_seconds),
            layer.records_text(),
            f"[{color}]{checks}[/{color}]",
        )
    notes = [
        Text(
            "lag: newest source commit vs what the layer holds, worst table; records: not yet in "
            "the layer (~: an estimate from bronze files)",
            style="dim",
        )
    ]
    if age > 120:
        notes.append(Text("not measured for over 2 min: is Dagster running?", style="yellow"))
    return _section(f"lag behind the source (measured {age:.0f} s ago)", grid, *notes)


def render_tables(tables: list[TableStatus] | Unavailable) -> RenderableType:
    if isinstance(tables, Unavailable):
        return _unavailable("tables", tables)
    grid = _grid("table", "source rows", "newest file", "lag rec.", "lag", "silver rows")
    # Table names stay whole when they can; numbers never wrap.
    grid.columns[0].min_width = min(24, max((len(t.table) for t in tables), default=5))
    grid.columns[0].overflow = "fold"
    for column in grid.columns[1:]:
        column.no_wrap = True
    # A lag not measured says why once, below the table, not in every cell.
    reasons: dict[str, list[str]] = {}
    for t in tables:
        measured = t.lag_state == "ok"
        if not measured:
            reasons.setdefault(t.lag_state, []).append(t.table)
        short = "-" if measured or t.lag_state.startswith("unknown") else t.lag_state
        grid.add_row(
            t.table,
            _or_dash(t.source_rows),
            _seconds(t.newest_bronze_age_s) + (" ago" if t.newest_bronze_age_s is not None else ""),
            t.lag_records_text() if measured else short,
            t.lag_seconds_text() if measured else short,
            _or_dash(t.silver_rows),
        )
    notes = [
        Text(f"lag {reason}: {', '.join(names)}", style="yellow", overflow="fold")
        for reason, names in reasons.items()
        if reason.startswith("unknown")
    ]
    return _section("tables", grid, *notes)


def render_gold(gold: list[GoldHour] | Unavailable) -> RenderableType:
    if isinstance(gold, Unavailable):
        return _unavailable("newest gold hour", gold)
    lines = [
        Text.assemble(
            ("newest gold hour: ", "bold"),
            f"{hour.table} ",
            hour.newest_hour.strftime("%Y-%m-%d %H:00")
            if hour.newest_hour is not None
            else ("no gold yet", "yellow"),
        )
        for hour in gold
    ]
    return Group(*lines)


def render_failing_checks(failing: list[FailingCheck] | Unavailable) -> RenderableType:
    if isinstance(failing, Unavailable):
        return _unavailable("failing checks", failing)
    if not failing:
        return Text.assemble(("failing checks: ", "bold"), ("none", "green"))
    lines: list[RenderableType] = [Text(f"failing checks: {len(failing)}", style="bold red")]
    for check in failing:
        description = check.description.replace("\n", " ")
        if len(description) > DESCRIPTION_CHARS:
            description = description[: DESCRIPTION_CHARS - 3] + "..."
        lines.append(Text.assemble(("  ✗ ", "red"), (check.check, "bold"), f" ({check.severity})"))
        lines.append(Padding(Text(description, style="dim"), (0, 0, 0, 4)))
    return Group(*lines)


def render_endpoints(endpoints: list[Endpoint]) -> RenderableType:
    return Group(
        *(
            Text.assemble(
                (f"{e.name}: ", "bold"),
                f"{e.url} ",
                ("up", "green") if e.up else ("down: run `binlake up`", "yellow"),
            )
            for e in endpoints
        )
    )


def render_page(page: HealthPage) -> Group:
    """The whole page, in the order an operator reads it."""
    header = Text.assemble(("binlake status ", "bold"), _iso(page.checked_at))
    return Group(
        header,
        Text(f"state: {page.state_dir}", style="dim", overflow="fold"),
        render_components(page),
        render_capture(page.capture),
        render_lag(page.lag, page.checked_at),
        render_tables(page.tables),
        render_gold(page.gold),
        render_failing_checks(page.failing_checks),
        render_endpoints(page.endpoints),
    )


def watch_page(
    collect: Callable[[], HealthPage],
    console: Console,
    every_seconds: float,
    *,
    frames: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Redraw the page every `every_seconds` in place until interrupted (or `frames` drawn)."""
    drawn = 1
    with Live(render_page(collect()), console=console, auto_refresh=False) as live:
        while frames is None or drawn < frames:
            sleep(every_seconds)
            live.update(render_page(collect()), refresh=True)
            drawn += 1

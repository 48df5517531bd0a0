"""The floor plan holds: every first-party import points to the same floor or one below.

Floors, bottom up (README, "Architecture"):
    kernel   settings, errors, storage, failpoints, time, alerts, the source database, consumer
             groups, retries: what every floor needs and that needs nothing of binlake
    cdc      the capture side: Debezium envelopes, Avro, Connect's REST API, connector health
    engine   the lake, Dagster- and Faust-free: binlake.bronze, then binlake.silver, then
             binlake.gold, binlake.freshness and binlake.sql (silver reads bronze, gold reads
             silver, sql serves silver and gold)
    runtime  what runs the engine: streams (Faust), compactor, dagster_defs (Dagster wiring)
    shell    what a person runs: the CLI, the demo, the local stack, status

Within the runtime, only dagster_defs may use compactor (the compaction job runs it). The shell's
CLI imports inside its commands so that `binlake --help` does not load Dagster and Faust; those
imports still point downward, and no other module imports inside a function.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("binlake", "cdc", "streams", "compactor", "dagster_defs")

# Most specific prefix wins. The rank is the floor: an import may only point to a rank <= its own,
# and within the engine and the runtime the sub-floors below say which way.
FLOORS: dict[str, tuple[int, str]] = {
    "binlake": (0, "kernel"),
    "cdc": (1, "cdc"),
    "binlake.bronze": (2, "engine: bronze"),
    "binlake.silver": (3, "engine: silver"),
    "binlake.gold": (4, "engine: gold"),
    "binlake.freshness": (4, "engine: freshness"),
    "binlake.lake": (4, "engine: the Python reader of silver and gold"),
    "binlake.sql": (4, "engine: sql"),
    "compactor": (5, "runtime: compactor"),
    "streams": (5, "runtime: streams"),
    "dagster_defs": (6, "runtime: dagster_defs"),
    "binlake.cli": (7, "shell"),
    "binlake.__main__": (7, "shell"),
    "binlake.demo": (7, "shell"),
    "binlake.local_stack": (7, "shell"),
    "binlake.status": (7, "shell"),
    "binlake.status_page": (7, "shell"),
    "binlake.jvm_artifacts": (7, "shell"),
}
# Modules of one rank that must not see each other.
SIDEWAYS_FORBIDDEN = {("compactor", "streams"), ("streams", "compactor")}
# Where importing inside a function is allowed: commands load their floor only when they run.
LAZY_IMPORTS_ALLOWED = {"binlake.cli"}


def floor_of(module: str) -> tuple[str, int, str]:
    best = max((p for p in FLOORS if module == p or module.startswith(p + ".")), key=len)
    return (best, *FLOORS[best])


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    in_function: bool

    def __str__(self) -> str:
        where = " (inside a function)" if self.in_function else ""
        return f"{self.importer}:{self.line} imports {self.imported}{where}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def first_party_imports() -> list[Import]:
    found: list[Import] = []
    for package in FIRST_PARTY:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            in_function = {
                id(node)
                for function in ast.walk(tree)
                if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
                for node in ast.walk(function)
            }
            importer = module_name(path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] in FIRST_PARTY:
                        found.append(Import(importer, name, node.lineno, id(node) in in_function))
    return found


def upward(imp: Import) -> str | None:
    """Why this import breaks the floor plan, or None when it points down or level."""
    importer_prefix, importer_rank, importer_floor = floor_of(imp.importer)
    imported_prefix, imported_rank, imported_floor = floor_of(imp.imported)
    if imported_rank > importer_rank:
        return f"{imp}: {importer_floor} must not import from {imported_floor}"
    if (importer_prefix, imported_prefix) in SIDEWAYS_FORBIDDEN:
        return f"{imp}: {importer_floor} and {imported_floor} are separate processes' code"
    return None


def test_the_import_graph_has_no_upward_arrow() -> None:
    wrong = [reason for imp in first_party_imports() if (reason := upward(imp))]
    assert not wrong, "\n".join(wrong)


def test_only_the_cli_imports_inside_functions() -> None:
    hidden = [
        str(imp)
        for imp in first_party_imports()
        if imp.in_function and floor_of(imp.importer)[0] not in LAZY_IMPORTS_ALLOWED
    ]
    assert not hidden, "\n".join(hidden)


def test_dagster_is_imported_only_by_the_dagster_wiring_and_the_shell() -> None:
    users = []
    for package in ("binlake", "cdc", "streams", "compactor"):
        for path in sorted((ROOT / package).rglob("*.py")):
            module = module_name(path)
            if floor_of(module)[2] == "shell":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = (
                        [a.name for a in node.names]
                        if isinstance(node, ast.Import)
                        else [node.module or ""]
                    )
                    if any(n.split(".")[0] in ("dagster", "dagster_polars") for n in names):
                        users.append(f"{module}:{node.lineno}")
    assert not users, "Dagster-free floors import Dagster:\n" + "\n".join(users)


@pytest.mark.parametrize(
    ("importer", "imported", "expected"),
    [
        ("binlake.silver.merge_changes", "binlake.bronze.manifest", None),
        ("binlake.bronze.reader", "binlake.silver.delta_table", "engine: bronze must not import"),
        ("binlake.settings", "cdc.envelope", "kernel must not import from cdc"),
        ("streams.app", "compactor.run", "separate processes"),
        ("dagster_defs.compaction.jobs", "compactor.run", None),
        ("binlake.cli", "dagster_defs.definitions", None),
        ("dagster_defs.read", "binlake.status", "must not import from shell"),
    ],
)
def test_the_rule_itself(importer: str, imported: str, expected: str | None) -> None:
    reason = upward(Import(importer, imported, 1, in_function=False))
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


def test_every_dagster_defs_module_is_dagster_wiring() -> None:
    """Engine code (Dagster-free) lives in binlake's engine floor, not beside the definitions."""
    dagster_free = []
    for path in sorted((ROOT / "dagster_defs").rglob("*.py")):
        tree = ast.parse(path.read_text())
        if not tree.body or path.name == "__init__.py":
            continue
        imported = {
            name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for name in (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
        }
        if not imported & {"dagster", "dagster_polars"}:
            dagster_free.append(module_name(path))
    assert not dagster_free, "Dagster-free modules in dagster_defs:\n" + "\n".join(dagster_free)

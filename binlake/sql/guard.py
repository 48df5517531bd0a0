"""What the SQL endpoint runs: reads of the published views and the metadata clients need, and
nothing else.

ClickHouse's own parser decides what a query is: the text is first normalised by
`formatQuerySingleLine` (which refuses more than one statement), then `EXPLAIN AST` of that one
statement is walked. Allowed: SELECT (UNION, INTERSECT, EXCEPT), SHOW, DESCRIBE, EXISTS, EXPLAIN;
tables of `lake` and the metadata tables of `system` and `information_schema` only; no table
function but the row generators (`numbers`, ...), no `file()` either as a scalar; no SETTINGS
clause or SET. The statement that ran the checks is the one executed (`Checked.sql`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from binlake.sql.views import DATABASE

READONLY = 164  # ClickHouse's code for "Cannot execute query in readonly mode"

ALLOWED_STATEMENTS = frozenset(
    {
        "SelectWithUnionQuery",
        "SelectIntersectExceptQuery",
        "ShowTables",  # SHOW TABLES, SHOW DATABASES
        "ShowColumns",
        "DescribeQuery",
        "ExistsTableQuery",
        "ExistsDatabaseQuery",
        "ExistsViewQuery",
        "ShowCreateTableQuery",
        "ShowCreateViewQuery",
        "ShowCreateDatabaseQuery",
        "Explain",
    }
)
# Metadata BI clients read: listing databases, tables, columns, functions, types and settings.
SYSTEM_TABLES = frozenset(
    {
        "one",
        "numbers",
        "databases",
        "tables",
        "columns",
        "functions",
        "table_functions",
        "settings",
        "formats",
        "data_type_families",
        "time_zones",
        "collations",
        "table_engines",
        "build_options",
        "keywords",
        "aggregate_function_combinators",
        "contributors",
    }
)
METADATA_DATABASES = frozenset({"information_schema", "INFORMATION_SCHEMA"})
# Row generators read nothing outside the query.
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries", "values"}
)
# Scalar functions that read outside the query (`file(path)` returns a file's contents).
READING_FUNCTIONS = frozenset({"file", "filesystemavailable", "filesystemcapacity"})
# Functions whose right-hand argument may name a table (`x IN db.table`).
IN_FUNCTIONS = frozenset(
    {"in", "notin", "globalin", "globalnotin", "nullin", "notnullin", "globalnullin"}
)
# `format(...)` is a string function as well as a table function reading its own argument.
SCALAR_TWINS = frozenset({"format"})

# Statements that change something, by their AST kind; refused at the top and inside an EXPLAIN.
STATEMENT_NAMES = {
    "InsertQuery": "INSERT",
    "CreateQuery": "CREATE (DDL)",
    "AlterQuery": "ALTER (DDL)",
    "DropQuery": "DROP (DDL)",
    "RenameQuery": "RENAME (DDL)",
    "Set": "SET",
    "UseQuery": "USE",
    "SYSTEM": "SYSTEM",
    "KillQueryQuery": "KILL",
    "OptimizeQuery": "OPTIMIZE",
    "DeleteQuery": "DELETE",
    "UpdateQuery": "UPDATE",
    "TruncateQuery": "TRUNCATE",
    "GrantQuery": "GRANT",
}

_NODE = re.compile(r"^(?P<indent> *)(?P<kind>\S+)(?: (?P<rest>.*))?$")
_CHILDREN = re.compile(r"\s*\(children \d+\)$")


class RefusedQuery(Exception):
    """A query the endpoint does not run; the message names what was refused."""

    code = READONLY


class QueryEngine(Protocol):
    def query(self, sql: str, fmt: str = ..., params: Mapping[str, str] | None = ...) -> object:
        """chDB's `Connection.query`."""
        ...


@dataclass(frozen=True)
class Node:
    depth: int
    kind: str
    rest: str
    parent: Node | None


@dataclass(frozen=True)
class Checked:
    """A query that passed: the one statement to run, as ClickHouse formats it."""

    sql: str


class QueryGuard:
    """Checks queries with the parser of `engine` (a chDB connection)."""

    def __init__(self, engine: QueryEngine) -> None:
        self.engine = engine
        table_functions = str(
            engine.query("SELECT name FROM system.table_functions", "TSVRaw")
        ).split()
        self.table_functions = frozenset(name.lower() for name in table_functions)

    def check(
        self, sql: str, params: Mapping[str, str] | None = None, database: str = DATABASE
    ) -> Checked:
        """`sql` normalised if it may run with `database` current; RefusedQuery if not. A query
        ClickHouse cannot parse raises the engine's own error (a syntax error, with position)."""
        single = str(
            self.engine.query(
                "SELECT formatQuerySingleLine({q:String})", "TSVRaw", {"q": escaped_value(sql)}
            )
        ).rstrip("\n")
        # TSVRaw does not escape, and formatQuerySingleLine gives one line.
        ast = str(self.engine.query(f"EXPLAIN AST {single}", "TSVRaw", dict(params or {})))
        nodes = parse_ast(ast)
        if not nodes:
            raise RefusedQuery("refused an empty query")
        statement = nodes[0].kind
        if statement not in ALLOWED_STATEMENTS:
            raise RefusedQuery(
                f"refused {describe_statement(statement)}: this endpoint is read-only and runs "
                "only SELECT, SHOW, DESCRIBE, EXISTS and EXPLAIN"
            )
        for node in nodes:
            self._check_node(node, database)
        return Checked(single)

    def _check_node(self, node: Node, database: str) -> None:
        if node.kind == "Set":
            raise RefusedQuery("refused a SETTINGS clause: settings are fixed on this endpoint")
        if node.kind in STATEMENT_NAMES:
            raise RefusedQuery(f"refused {describe_statement(node.kind)} (inside the query)")
        if node.kind == "Function":
            name = node.rest.split(" ", 1)[0]
            lowered = name.lower()
            as_table = node.parent is not None and node.parent.kind == "TableExpression"
            if lowered in ALLOWED_TABLE_FUNCTIONS:
                return
            if lowered in READING_FUNCTIONS or (
                lowered in self.table_functions and (as_table or lowered not in SCALAR_TWINS)
            ):
                raise RefusedQuery(
                    f"refused table function {name}(): only the views of database "
                    f"{DATABASE} are readable here"
                )
        if node.kind == "TableIdentifier":
            check_table(node.rest.split(" ", 1)[0], database)
        if node.kind == "Identifier" and in_right_hand(node) and "." in node.rest:
            check_table(node.rest.split(" ", 1)[0], database)


def escaped_value(text: str) -> str:
    """`text` as a query parameter value, which ClickHouse reads in its escaped (TSV) form."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def parse_ast(text: str) -> list[Node]:
    """`EXPLAIN AST` output as nodes in document order, each with its parent (one space of
    indent per level)."""
    nodes: list[Node] = []
    stack: list[Node] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _NODE.match(_CHILDREN.sub("", line))
        if match is None:
            raise RefusedQuery(f"refused a query the guard cannot read ({line.strip()!r})")
        depth = len(match["indent"])
        while stack and stack[-1].depth >= depth:
            stack.pop()
        node = Node(depth, match["kind"], match["rest"] or "", stack[-1] if stack else None)
        nodes.append(node)
        stack.append(node)
    return nodes


def in_right_hand(node: Node) -> bool:
    """`node` is the second argument of an IN (which may name a table)."""
    arguments = node.parent
    function = arguments.parent if arguments is not None else None
    return (
        arguments is not None
        and arguments.kind == "ExpressionList"
        and function is not None
        and function.kind == "Function"
        and function.rest.split(" ", 1)[0].lower() in IN_FUNCTIONS
    )


def check_table(name: str, database: str) -> None:
    """Refuse a table outside `lake` and the metadata tables (unqualified: in `database`)."""
    db, _, table = name.rpartition(".")
    db = (db or database).strip('`"')
    table = table.strip('`"')
    # `default` is empty and stays so (no DDL): an unqualified name there is a WITH alias.
    if db in (DATABASE, "default") or db in METADATA_DATABASES:
        return
    if db == "system" and table in SYSTEM_TABLES:
        return
    raise RefusedQuery(
        f"refused table {db}.{table}: only the views of database {DATABASE} and metadata "
        "tables are readable here"
    )


def describe_statement(kind: str) -> str:
    """A reader's name for an AST statement kind (`InsertQuery` -> "INSERT")."""
    return STATEMENT_NAMES.get(kind, f"statement {kind}")

"""Schema check of each bronze table: consecutive schema versions must be compatible.

A breaking schema step (type family change, narrowing, primary key change) is written to bronze
with its own types, never cast, and this check is how it reaches people: it fails, naming the
column and both types, as long as bronze holds versions that do not fit together and no resync
has healed the step. The versions, steps and healing are `binlake.silver.schema_guard`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import pyarrow as pa

from binlake.bronze.schema_drift import ChangeKind
from binlake.silver.schema_guard import (
    CompletedResync,
    VersionStep,
    completed_resyncs,
    schema_versions,
    unhealed_steps,
    version_steps,
)
from dagster_defs.declare import bronze_lake_check
from dagster_defs.keys import bronze_key
from dagster_defs.resources import BronzeLake

SCHEMA_CHECK = "schema_versions_compatible"

# Runs whenever a bronze hour of the table is reported (normally in the same run as silver).
# Plain eager() waits while any hour of its partitioned asset is missing, and most hours never
# get a file (see dagster_defs.automation), so that clause is dropped as it is for silver.
SCHEMA_CHECK_CONDITION: dg.AutomationCondition = (
    dg.AutomationCondition.eager()
    .without(~dg.AutomationCondition.any_deps_missing())
    .with_label("eager_over_bronze_hours")
)


def check_schema_versions(
    bronze_lake: BronzeLake, table: str, completed_resyncs: Sequence[CompletedResync] = ()
) -> dg.AssetCheckResult:
    """The check's evaluation for `table`; callable without a run (tests, tools).

    A breaking step that a resync of the table (`completed_resyncs`) re-read after it counts as
    healed and no longer fails the check.
    """
    bronze = bronze_lake.reader()
    versions = schema_versions(bronze.storage, bronze.manifest().entries_for(table))
    steps = version_steps(table, versions)
    breaking = unhealed_steps(steps, completed_resyncs)
    healed = [s for s in steps if s.kind is ChangeKind.BREAKING and s not in breaking]
    accepted = [step for step in steps if step.kind is ChangeKind.ACCEPTED]
    metadata: dict[str, dg.RawMetadataValue] = {
        "schema_versions": len(versions),
        "current_schema_version": versions[-1].version if versions else 0,
        "breaking_changes": dg.MetadataValue.md(_bullets(breaking) or "none"),
        "accepted_changes": dg.MetadataValue.md(_bullets(accepted) or "none"),
        "healed_by_resync": dg.MetadataValue.md(_bullets(healed) or "none"),
    }
    if versions:
        metadata["current_schema_fingerprint"] = versions[-1].fingerprint
        metadata["current_schema"] = dg.MetadataValue.md(_schema_table(versions[-1].schema))
    if breaking:
        description = (
            "Breaking schema change in bronze, not cast: "
            + " | ".join(str(step) for step in breaking)
            + f". Silver refuses these rows until a resync has re-read the table: "
            f"binlake resync --table {table}"
        )
    elif versions:
        description = (
            f"{len(versions)} schema version(s) of {table}, each compatible with the one before"
        )
    else:
        description = f"no bronze file of {table} has a tracked schema version yet"
    return dg.AssetCheckResult(passed=not breaking, description=description, metadata=metadata)


def _bullets(steps: list[VersionStep]) -> str:
    return "\n".join(f"- {step}" for step in steps)


def _schema_table(schema: pa.Schema) -> str:
    rows = [f"| `{f.name}` | `{f.type}` |" for f in schema]
    return "\n".join(["| column | type |", "| --- | --- |", *rows])


def build_schema_check(
    table: str,
    *,
    asset: dg.AssetKey | None = None,
    automation_condition: dg.AutomationCondition = SCHEMA_CHECK_CONDITION,
) -> dg.AssetChecksDefinition:
    """The schema check of bronze `table`, on its bronze asset or (`asset`) on another one.

    Silver carries the same check, so a breaking change upstream shows on the table people
    read, not only on the restricted bronze layer.
    """

    def evaluate(bronze_lake: BronzeLake) -> dg.AssetCheckResult:
        resyncs = completed_resyncs(bronze_lake.reader().storage, table)
        return check_schema_versions(bronze_lake, table, resyncs)

    return bronze_lake_check(
        asset=asset or bronze_key(table),
        name=SCHEMA_CHECK,
        description=(
            f"Every schema version of bronze {table} is compatible with the one before: new or "
            "dropped columns and widened types pass; a type family change, narrowing or a "
            "primary key change fails, naming the column and both types."
        ),
        automation_condition=automation_condition,
        evaluate=evaluate,
    )

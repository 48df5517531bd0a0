"""The offset continuity check of each bronze table (`binlake.bronze.continuity`): every Kafka
offset of the table's topic-partitions is in exactly one bronze file or dead-lettered.
"""

from __future__ import annotations

import dagster as dg

from binlake.bronze.continuity import (
    MAX_LISTED,
    BoundedListing,
    PartitionContinuity,
    dead_letter_offsets,
    offset_continuity,
)
from dagster_defs.bronze.checks import SCHEMA_CHECK_CONDITION
from dagster_defs.declare import bronze_lake_check
from dagster_defs.keys import bronze_key
from dagster_defs.resources import BronzeLake

CONTINUITY_CHECK = "offsets_contiguous"


def continuity_result(table: str, partitions: list[PartitionContinuity]) -> dg.AssetCheckResult:
    """The check's result for `table` from its partitions' continuity (pure)."""
    gaps, overlaps = BoundedListing(), BoundedListing()
    summary: dict[str, dict[str, object]] = {}
    for p in partitions:
        for gap in p.gaps:
            gaps.add(f"{p.name} {gap}")
        for overlap in p.overlaps:
            overlaps.add(f"{p.name} {overlap}")
        for text in p.invalid:
            overlaps.add(f"{p.name} invalid entry {text}")
        summary[p.name] = {
            "first_offset": p.first_offset,
            "last_offset": p.last_offset,
            "files": p.files,
            "gaps": [str(g.offsets) for g in p.gaps[:MAX_LISTED]],
            "overlaps": [
                f"{o.offsets} ({o.first_path} / {o.second_path})" for o in p.overlaps[:MAX_LISTED]
            ],
            "dead_lettered_between_files": [str(r) for r in p.dead_lettered[:MAX_LISTED]],
        }
    failed = [p for p in partitions if not p.ok]
    metadata: dict[str, dg.RawMetadataValue] = {
        "partitions": dg.MetadataValue.json(summary),
        "files": sum(p.files for p in partitions),
        "gaps": gaps.total,
        "missing_offsets": sum(p.missing_offsets for p in partitions),
        "overlaps": overlaps.total,
        "gap_ranges": dg.MetadataValue.md(gaps.markdown()),
        "overlap_ranges": dg.MetadataValue.md(overlaps.markdown()),
        "dead_lettered_offsets_between_files": sum(
            r.size for p in partitions for r in p.dead_lettered
        ),
    }
    if failed:
        problems = [*gaps.lines[:3], *overlaps.lines[:3]]
        description = (
            f"bronze {table}: {gaps.total} gap(s) and {overlaps.total} overlap(s) in Kafka "
            "offsets: "
            + " | ".join(problems)
            + (" | ..." if gaps.total + overlaps.total > 6 else "")
            + ". Gaps are offsets in no bronze file and with no dead letter (a lost file, or "
            "records skipped on a topic with transactions or compaction)."
        )
    elif partitions:
        description = (
            f"bronze {table}: every offset of "
            + ", ".join(f"{p.name} {p.first_offset}..{p.last_offset}" for p in partitions)
            + " is in exactly one file or dead-lettered"
        )
    else:
        description = f"no bronze file of {table} yet"
    return dg.AssetCheckResult(passed=not failed, description=description, metadata=metadata)


def check_offset_continuity(bronze_lake: BronzeLake, table: str) -> dg.AssetCheckResult:
    """The check's evaluation for `table`; callable without a run (tests, tools)."""
    bronze = bronze_lake.reader()
    entries = bronze.manifest().entries_for(table)  # first the manifest, then dead letters
    topics = {entry.topic for entry in entries}
    letters = dead_letter_offsets(bronze.storage, topics) if topics else {}
    partitions = offset_continuity(entries, dead_letters=letters)
    return continuity_result(table, partitions)


def build_continuity_check(table: str) -> dg.AssetChecksDefinition:
    return bronze_lake_check(
        asset=bronze_key(table),
        name=CONTINUITY_CHECK,
        description=(
            f"Per Kafka topic-partition, the bronze files of {table} hold every offset from the "
            "lowest to the highest exactly once: no gap (offsets neither in a file nor "
            "dead-lettered) and no overlap (offsets in two files)."
        ),
        automation_condition=SCHEMA_CHECK_CONDITION,
        evaluate=lambda bronze_lake: check_offset_continuity(bronze_lake, table),
    )

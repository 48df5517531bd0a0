"""The ``bronze_compaction`` job: one compaction pass over the lake (``compactor.run``).

One run at a time (tag ``binlake/compaction``, limited to 1 in ``dagster.yaml``): two passes
would plan the same hours; the manifest lock would make the second one's swaps fail cleanly,
but it would have rewritten the files for nothing.
"""

from typing import Any

import dagster as dg

from binlake.settings import Settings
from compactor.run import run_compaction
from dagster_defs.declare import single_op_job

COMPACTION_JOB_NAME = "bronze_compaction"
COMPACTION_TAG = "binlake/compaction"


def build_compaction_job(settings: Settings) -> dg.JobDefinition:
    @dg.op(
        name="compact_closed_bronze_hours",
        description="Expires bronze past compactor.bronze_retention_days (when set), rewrites "
        "the small files of each closed bronze hour as few sorted files (same rows, checked), "
        "then deletes replaced and expired files past their retention.",
    )
    def compact_closed_bronze_hours(context: dg.OpExecutionContext) -> dg.Output[dict[str, Any]]:
        report = run_compaction(settings)
        summary = report.summary()
        context.log.info(f"compaction: {summary}")
        if report.failed:
            raise dg.Failure(
                f"{len(report.failed)} group(s) not compacted (their files are unchanged)",
                metadata={"failed": "\n".join(summary["failed"])},  # type: ignore[arg-type]
            )
        metadata = {k: v for k, v in summary.items() if k != "failed"}
        return dg.Output(summary, metadata=metadata)  # type: ignore[arg-type]

    return single_op_job(
        compact_closed_bronze_hours,
        name=COMPACTION_JOB_NAME,
        tags={COMPACTION_TAG: "true"},
        description="Compacts closed bronze hours; started by the bronze_compaction sensor or "
        "by hand (binlake compact does the same from the command line).",
    )

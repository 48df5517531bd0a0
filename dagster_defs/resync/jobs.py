"""The ``table_resync`` job: `binlake resync --table T` launched from the Dagster UI.

It inserts Debezium's ``execute-snapshot`` signal for the table and waits for Debezium's
notification that the table was read again, recording the end in the lake. One at a time per
table: runs carry the tag ``binlake/resync=<table>`` and the instance limits each value of that
tag to one run (``applyLimitPerUniqueValue``); launched without it (the UI's default), the job's
own tag value ``manual`` makes manual runs one at a time. ``binlake.silver.resync`` refuses a second
resync of a table whose first is not over in any case.

What follows needs no job of its own: bronze writes the re-read rows, silver merges them, and
once it has merged up to the resync's end its sweep removes the rows the source no longer has
(``resync_progress`` requests that silver run if nothing else does).
"""

# No `from __future__ import annotations`: Dagster reads the op's config type from its signature.
import dagster as dg
from pydantic import Field

from binlake.errors import BinlakeError
from binlake.settings import Settings
from binlake.silver.resync import ResyncProgress, request_resync, wait_for_completion
from dagster_defs.declare import single_op_job

RESYNC_JOB_NAME = "table_resync"
RESYNC_TAG = "binlake/resync"


class ResyncConfig(dg.Config):
    """One table to read again."""

    table: str = Field(description="The <db>.<table> to read again from the source.")
    reason: str = Field("Dagster table_resync job", description="Kept in the resync's record.")
    timeout_seconds: float = Field(
        3600.0, description="How long the run waits for Debezium to finish reading the table."
    )


def resync_run_tags(table: str) -> dict[str, str]:
    """Tags of a resync run of `table`: one such run at a time (the instance's tag limit)."""
    return {RESYNC_TAG: table}


def build_resync_job(settings: Settings) -> dg.JobDefinition:
    @dg.op(
        name="resync_table",
        description="Signals Debezium to read a table again (incremental snapshot) and waits "
        "until it has.",
    )
    def resync_table(context: dg.OpExecutionContext, config: ResyncConfig) -> dg.Output[str]:
        try:
            request = request_resync(settings, config.table, reason=config.reason)
            context.log.info(
                f"resync {request.id} of {config.table} requested at binlog "
                f"{request.signal_position}"
            )
            last_key: list[str | None] = [None]

            def log_progress(progress: ResyncProgress) -> None:
                if progress.last_processed_key != last_key[0]:
                    last_key[0] = progress.last_processed_key
                    context.log.info(
                        f"Debezium read {config.table} up to key {progress.last_processed_key} "
                        f"of {progress.maximum_key}"
                    )

            completion = wait_for_completion(
                settings, request, timeout_s=config.timeout_seconds, on_progress=log_progress
            )
        except BinlakeError as exc:
            raise dg.Failure(
                f"resync of {config.table} not done: {exc}", allow_retries=False
            ) from exc
        if not completion.succeeded:
            raise dg.Failure(f"resync {request.id} of {config.table} ended {completion.status}")
        return dg.Output(
            request.id,
            metadata={
                "resync_id": request.id,
                "table": config.table,
                "signal_position": str(request.signal_position),
                "rows_scanned": completion.rows_scanned or 0,
                "end_offsets": str(completion.end_offsets),
            },
        )

    return single_op_job(
        resync_table,
        name=RESYNC_JOB_NAME,
        tags={RESYNC_TAG: "manual"},
        description="Reads one table again from the source while streaming goes on (Debezium "
        "incremental snapshot); silver then removes the rows the source no longer has.",
    )

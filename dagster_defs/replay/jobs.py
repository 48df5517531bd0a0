"""The ``consumer_group_replay`` job: `binlake replay` launched from the Dagster UI.

Launched with its default config it is a dry run: the run's metadata shows each partition's
committed and target offsets and the lost bronze files the bronze writer will write again, and
nothing moves. With ``dry_run: false`` it moves the group's offsets; Kafka moves a group's
offsets only while it has no member, so the run fails (nothing moved, the members named) while
the group's consumers run: stop them first (for the bronze writer, its service).

What follows needs no job of its own: restarted, the bronze writer skips what bronze holds and
appends an entry for each file it writes again, the manifest sensor reports it, silver merges it
by eager automation (``silver_catch_up`` covers a file restored under its old entry) and gold
recomputes the order hours silver's commits touched.
"""

# No `from __future__ import annotations`: Dagster reads the op's config type from its signature.
import dagster as dg
from confluent_kafka import KafkaException
from pydantic import Field

from binlake.bronze.replay import ReplayPlan, apply_replay, plan_replay_request
from binlake.errors import BinlakeError
from binlake.settings import Settings
from dagster_defs.declare import single_op_job
from dagster_defs.replay.resources import KafkaConsumerGroups

REPLAY_JOB_NAME = "consumer_group_replay"
# One replay at a time (dagster.yaml limits the tag to 1): two resets of one group would race.
REPLAY_TAG = "binlake/replay"


class ReplayConfig(dg.Config):
    """One consumer group reset; give exactly one of ``from_time`` and ``from_offset``."""

    table: str = Field(description="The <db>.<table> whose topic is replayed.")
    from_time: str | None = Field(
        None,
        description="Every partition from its first record at or after this time: ISO 8601 "
        "(UTC unless it has an offset) or epoch milliseconds.",
    )
    from_offset: str | None = Field(
        None, description="P:O[,P:O...]: these partitions from these offsets."
    )
    group: str | None = Field(
        None, description="Consumer group to reset; default the bronze writer's."
    )
    dry_run: bool = Field(
        True, description="Only show current and target offsets (set false to move them)."
    )


def plan_markdown(plan: ReplayPlan) -> str:
    lines = [
        f"`{plan.group}` on `{plan.topic}`",
        "",
        "| partition | current | target | note |",
        "|---|---|---|---|",
    ]
    for p in plan.partitions:
        current = "-" if p.current is None else str(p.current)
        lines.append(f"| {p.partition} | {current} | {p.target} | {p.note} |")
    rewritten = [path for p in plan.partitions for path in p.rewritten_files]
    if rewritten:
        lines += ["", "Lost bronze files the writer will write again:", ""]
        lines += [f"- `{path}`" for path in rewritten]
    return "\n".join(lines)


def build_replay_job(settings: Settings) -> dg.JobDefinition:
    @dg.op(
        name="reset_consumer_group",
        description="Plans the reset of a consumer group of one table's topic and, unless it "
        "is a dry run, moves the group's offsets.",
    )
    def reset_consumer_group(
        context: dg.OpExecutionContext, config: ReplayConfig, kafka: KafkaConsumerGroups
    ) -> dg.Output[dict[str, int]]:
        client = kafka.client()
        try:
            plan = plan_replay_request(
                settings,
                config.table,
                from_time=config.from_time,
                from_offset=config.from_offset,
                group=config.group,
                kafka=client,
            )
            metadata: dict[str, dg.RawMetadataValue] = {
                "group": plan.group,
                "topic": plan.topic,
                "plan": dg.MetadataValue.md(plan_markdown(plan)),
                "dry_run": config.dry_run,
                "lost_files_to_write_again": sum(len(p.rewritten_files) for p in plan.partitions),
            }
            if config.dry_run:
                context.log.info(f"dry run, nothing moved:\n{plan_markdown(plan)}")
                return dg.Output({str(p): o for p, o in plan.targets.items()}, metadata=metadata)
            after = apply_replay(plan, settings, kafka=client)
        except (BinlakeError, KafkaException) as exc:
            # A bad request or a group in use: retrying the same config cannot help.
            raise dg.Failure(
                f"replay of {config.table} not done: {exc}", allow_retries=False
            ) from exc
        context.log.info(f"consumer group {plan.group} reset on {plan.topic}: {after}")
        return dg.Output({str(p): o for p, o in after.items() if o is not None}, metadata=metadata)

    return single_op_job(
        reset_consumer_group,
        name=REPLAY_JOB_NAME,
        tags={REPLAY_TAG: "true"},
        description="Resets a consumer group of one table's topic to a time or offsets (a "
        "replay); dry run by default. Stop the group's consumers first.",
    )

"""Replay definitions: the ``consumer_group_replay`` job and the Kafka cluster it talks to."""

from __future__ import annotations

import dagster as dg

from binlake.settings import Settings
from dagster_defs.replay.jobs import build_replay_job
from dagster_defs.replay.resources import KafkaConsumerGroups


def build_replay_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        jobs=[build_replay_job(settings)],
        resources={
            "kafka": KafkaConsumerGroups(bootstrap_servers=settings.kafka.bootstrap_servers)
        },
    )

"""A lake continues only against the broker it was written from.

Bronze names files and resumes by Kafka offset. The local broker keeps its data under the state
directory, so `binlake down` and `up` continue the same lake; but a broker whose data was removed
(or a lake copied in from elsewhere) would start its topics at offset 0 again, and the worker
would skip every new record as already written. `binlake up` refuses that, naming what differs.
"""

from __future__ import annotations

from binlake.bronze.manifest import Manifest
from binlake.consumer_groups import GroupOffsetsClient
from binlake.errors import ConfigurationError
from binlake.settings import Settings
from binlake.storage import LakeStorage


def lake_behind_broker_problems(settings: Settings, broker: GroupOffsetsClient) -> list[str]:
    """What the broker lacks of what the lake holds: one line per topic-partition."""
    storage = LakeStorage.from_settings(settings)
    problems = []
    for (topic, partition), last_offset in sorted(Manifest(storage).last_offsets().items()):
        if partition not in broker.partitions(topic):
            problems.append(
                f"{topic}[{partition}] holds offsets up to {last_offset} in the lake "
                "but does not exist on the broker"
            )
            continue
        end = broker.log_end(topic, partition)
        if end <= last_offset:
            problems.append(
                f"{topic}[{partition}] holds offsets up to {last_offset} in the lake "
                f"but ends at {end} on the broker"
            )
    return problems


def refuse_a_lake_the_broker_does_not_hold(settings: Settings) -> None:
    problems = lake_behind_broker_problems(
        settings, GroupOffsetsClient(settings.kafka.bootstrap_servers)
    )
    if problems:
        raise ConfigurationError(
            f"the lake at {settings.lake_url} was not written from the broker at "
            f"{settings.kafka.bootstrap_servers}: "
            + "; ".join(problems[:5])
            + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
            + ". Its offsets would make the bronze worker skip new records. Restore the broker's "
            "data, or move the lake away (or set BINLAKE_STORAGE_URL to a new place) to start a "
            "new lake from a fresh snapshot."
        )

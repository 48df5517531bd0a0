"""The dead-letter Kafka topic: created by the bronze worker when it is missing.

The records themselves are published by `streams.dead_letter.DeadLetterPublisher`; this module
is the one that talks to the broker's admin API for it.
"""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

log = logging.getLogger(__name__)

# Kafka error code of CreateTopics for a topic that exists already.
TOPIC_ALREADY_EXISTS = 36
# Headroom above bronze.max_message_bytes for the dead-letter producer's request size: the
# dead-letter headers and the record batch framing come on top of the record's own bytes.
DEAD_LETTER_HEADROOM_BYTES = 64 * 1024


async def ensure_dead_letter_topic(
    bootstrap_servers: str, topic: str, *, max_message_bytes: int | None = None
) -> None:
    """Create the dead-letter topic if it is missing (one partition, replicated up to 3 times),
    taking records up to `max_message_bytes` (a dead letter is the record's own bytes).

    One partition keeps every dead letter in the order it was published; they are rare. A topic
    that exists is left as it is (an operator may have created it with other settings).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        if topic in await admin.list_topics():
            return
        brokers = (await admin.describe_cluster()).get("brokers") or [None]
        replication = min(3, len(brokers))
        configs = {} if max_message_bytes is None else {"max.message.bytes": str(max_message_bytes)}
        response = await admin.create_topics(
            [NewTopic(topic, 1, replication, topic_configs=configs)]
        )
        for error in response.topic_errors:
            name, code = error[0], error[1]
            if code not in (0, TOPIC_ALREADY_EXISTS):
                message = error[2] if len(error) > 2 else ""
                raise RuntimeError(
                    f"cannot create dead-letter topic {name!r} on {bootstrap_servers}: "
                    f"Kafka error {code} {message}"
                )
        log.info("created dead-letter topic %s (replication %d)", topic, replication)
    finally:
        await admin.close()

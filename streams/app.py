"""The Faust app of the bronze worker: every CDC topic in, bronze Parquet + manifest out.

Run it with `binlake worker` (which calls `main()`), or with Faust's own CLI:
`faust -A streams.app worker -l info --without-web`. Settings come from `BINLAKE_*` environment
variables (see `binlake.settings`), loaded once, in `create_app()`, when this module is imported.

How it fits Faust:

* One agent reads every topic named `<prefix>.<db>.<table>`, found on the broker as they come
  (`streams.topic_discovery`: Faust's own pattern subscription subscribes to nothing).
* The agent iterates with `noack()` and acks an event itself only once the bronze file holding
  it is in the manifest (dead-lettered, schema-change and already-in-bronze records are acked
  in offset order with the rows around them). Faust commits acked offsets every
  `broker_commit_interval`, and only up to the first offset not acked, so a record that waits
  holds back the commit of its partition.
* A dead-lettered record is acked only once its copy is on the dead-letter topic as well as in
  the lake (`streams.dead_letter`; `DeadLetterAcks` holds its ack until then); the agent publishes
  it with the app's own producer before it reads the next record, creating the topic if it is
  missing (`streams.dead_letter_topic`). The topic copy is on when the app runs as a worker
  (`on_start`); driven without a broker (`agent.test_context()`) only the lake copy is made.
* Storage outages (the lake unwritable: permissions, a missing directory, a full disk) make the
  agent retry the same record with backoff (`binlake.retry`) while nothing is acked, so no offset is
  committed past what the manifest holds; the log gets one error per outage, reminders while it
  lasts and one line when it is over (`streams.outage.Outage`). So does a dead-letter topic the
  producer cannot reach.
* The app runs on `streams.faust_transport.BronzeTransport`: Faust's aiokafka transport with a
  per-message hand-off that does not create asyncio tasks for every message (twice the events
  per second). The app has no leader topic (binlake elects no leader), so it waits in `on_start`
  until the first CDC topic exists: Faust cannot start with an empty subscription.
* A timer rotates files by age; revoked partitions are flushed in the `on_partitions_revoked`
  signal and everything is flushed in `on_before_shutdown`. `stream_wait_empty` is off because
  buffered events are acked only by those flushes, which Faust's wait would run after.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from functools import cache, partial
from pathlib import Path
from typing import Any

import faust

from binlake.errors import RetriableError, StorageUnavailableError
from binlake.retry import Backoff, RetryAbandonedError, retry_with_backoff_async
from binlake.settings import Settings, load_settings
from streams.bronze_worker import BronzeWorker, KafkaRecord
from streams.dead_letter import DeadLetterAcks, DeadLetterPublisher
from streams.dead_letter_topic import DEAD_LETTER_HEADROOM_BYTES, ensure_dead_letter_topic
from streams.faust_transport import BronzeTransport
from streams.outage import Outage
from streams.partition_writer import Released
from streams.stall_watch import PartitionStalledError, Remedy, StallWatch
from streams.topic_discovery import (
    DISCOVERY_INTERVAL_SECONDS,
    RESUBSCRIBE_DELAY_SECONDS,
    DiscoveredTopic,
    TopicDirectory,
    TopicDiscovery,
    cdc_topic_pattern,
)

log = logging.getLogger(__name__)

# Backoff while storage or the dead-letter topic is unavailable (the stream waits; nothing is
# skipped).
RETRY_MIN_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0
# How often the stall watch compares what was delivered with what the broker holds.
STALL_CHECK_SECONDS = 5.0


class BronzeRuntime:
    """What the Faust hooks of one app call: the BronzeWorker plus acking and discovery."""

    def __init__(
        self,
        app: BronzeApp,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        worker: BronzeWorker | None = None,
    ):
        self.app = app
        self.settings = settings
        self.clock = clock
        self.directory = TopicDirectory(cdc_topic_pattern(settings.kafka.topic_prefix))
        self.discovery = TopicDiscovery(
            app, self.directory, settings.kafka.bootstrap_servers, clock=clock
        )
        self._worker = worker
        self.agent: Any = None  # the Faust agent, set by create_app()
        self.revocations = 0  # partition revocations seen (each rebalance revokes all)
        # Publishes dead letters to the dead-letter topic; None: lake copy only (no broker).
        self.dead_letter_publisher: DeadLetterPublisher | None = None
        self.dead_letter_outage = Outage(
            f"dead-letter topic {settings.dead_letter_topic}",
            clock=clock,
            consequence="Dead-lettered records are not acked until they are published there, so "
            "their partitions wait; retrying with backoff.",
        )
        # Retriable decoding trouble other than storage: the Avro schema registry unreachable.
        registry = settings.kafka.schema_registry_url
        self.decoder_outage = Outage(
            f"schema registry {registry}" if settings.kafka.value_format == "avro" else "decoder",
            clock=clock,
            consequence="Records wait (nothing skipped or dead-lettered); retrying with backoff.",
        )
        self.dead_letter_acks = DeadLetterAcks()
        self.stall_watch = StallWatch(clock, stall_seconds=settings.bronze.stall_seconds)

    @property
    def worker(self) -> BronzeWorker:
        if self._worker is None:
            self._worker = BronzeWorker.from_settings(self.settings, clock=self.clock)
        return self._worker

    def enable_dead_letter_topic(self, publisher: DeadLetterPublisher) -> None:
        """Publish dead letters with `publisher` (before acking them) from now on."""
        self.dead_letter_publisher = publisher
        log.info("dead letters go to the lake and to topic %s", publisher.topic)

    async def on_event(self, event: Any) -> None:
        """Handle one Faust event; acks it (and earlier ones) when their file is in bronze."""
        message = event.message
        record = KafkaRecord(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            timestamp_ms=_millis(message.timestamp),
            token=event,
            headers=_headers(message.headers),
        )
        revocations = self.revocations
        released = await self._handle(record, message, revocations)
        if released is None:
            return
        if not await self._publish_dead_letters(message, revocations):
            return
        self._ack(released)

    async def _handle(self, record: KafkaRecord, message: Any, revocations: int) -> Released | None:
        """`worker.handle(record)`, retried while storage is unavailable; None if revoked."""
        worker = self.worker
        tp = (record.topic, record.partition)
        failures = 0

        def report(exc: Exception) -> None:
            nonlocal failures
            failures += 1
            outage = worker.outage if isinstance(exc, StorageUnavailableError) else None
            (outage or self.decoder_outage).failed(exc, tp, f"{tp[0]}[{tp[1]}]@{record.offset}")

        try:
            released = await retry_with_backoff_async(
                partial(worker.handle, record),
                _retry_backoff(RETRY_MIN_SECONDS, RETRY_MAX_SECONDS),
                retry_if=_is_retriable,
                on_retry=report,
                # A rebalance revoked the partition meanwhile (Faust revokes all of them): its
                # owner reads the unacked record again from the committed offset, and writing
                # it here too could duplicate it.
                abandon=lambda: self._revoked_since(revocations, message),
            )
        except RetryAbandonedError:
            log.info("%s[%d]@%d: revoked while retrying, dropped", *_where(record))
            return None
        except Exception as exc:
            # The worker refuses the partition's later records (a gap there would be
            # skipped for good by the manifest-based resume). Stop: after a restart the
            # record is read again from the committed offset.
            log.exception("%s[%d]@%d: cannot handle record", *_where(record))
            await self.app.crash(exc)
            raise
        if failures:  # it had failed: whatever failed works now
            worker.outage.cleared(tp)
            self.decoder_outage.cleared(tp)
        return released

    async def _publish_dead_letters(self, message: Any, revocations: int) -> bool:
        """Publish the worker's new dead letters, retrying; False if revoked meanwhile.

        Runs before the record is acked and before the next record is read, so no record after
        a dead letter can be committed (or even reach the manifest) before the dead letter is
        on its topic.
        """
        letters = self.worker.take_dead_letters()
        publisher = self.dead_letter_publisher
        if not letters or publisher is None:
            return True
        self.dead_letter_acks.expect(letters)
        for index, letter in enumerate(letters):
            tp = (letter.topic, letter.partition)
            where = f"{letter.topic}[{letter.partition}]@{letter.offset}"
            try:
                # Any failure is retried, never skipped.
                await retry_with_backoff_async(
                    partial(publisher.publish, letter),
                    _retry_backoff(RETRY_MIN_SECONDS, RETRY_MAX_SECONDS),
                    on_retry=partial(self.dead_letter_outage.failed, key=tp, where=where),
                    abandon=lambda: self._revoked_since(revocations, message),
                )
            except RetryAbandonedError:
                # Not acked: the partition's next owner dead-letters them again.
                self.dead_letter_acks.forget(letters[index:])
                log.info("%s: revoked while publishing its dead letter, dropped", where)
                return False
            self.dead_letter_outage.cleared(tp)
            self.dead_letter_acks.published(letter)
        return True

    async def on_tick(self) -> None:
        try:
            released = self.worker.tick()
        except Exception as exc:
            log.exception("age rotation failed")
            await self.app.crash(exc)
            raise
        self._ack(released)

    async def discover(self) -> None:
        await self.discovery.refresh()

    async def watch_stalls(self) -> None:
        """Seek back, or restart, when records wait on the broker and are never delivered
        (`streams.stall_watch`). Not while retrying through an outage: records wait then on
        purpose."""
        outages = (self.worker.outage, self.decoder_outage, self.dead_letter_outage)
        if any(outage.ongoing for outage in outages):
            return
        consumer: Any = self.app.consumer
        try:
            progress = await asyncio.wait_for(
                consumer.partition_progress(), timeout=STALL_CHECK_SECONDS
            )
        except Exception as exc:  # noqa: BLE001 - the broker is away; the next check tries again
            log.debug("stall watch: cannot read partition progress: %r", exc)
            return
        remedy, stalled = self.stall_watch.check(progress)
        if remedy is Remedy.NONE:
            return
        described = ", ".join(
            f"{tp.topic}[{tp.partition}] (delivered up to {progress[tp].delivered}, committed "
            f"{progress[tp].committed}, position {progress[tp].position}, broker up to "
            f"{progress[tp].last_stable})"
            for tp in stalled
        )
        if remedy is Remedy.RESTART:
            log.error(
                "partitions stalled, the fetcher did not move after a seek: %s; restarting "
                "the worker (it resumes from the committed offsets)",
                described,
            )
            await self.app.crash(PartitionStalledError(described))
            return
        log.warning(
            "records wait on the broker but none was delivered for %.0f s: %s; seeking "
            "back to the committed offsets",
            self.stall_watch.stall_seconds,
            described,
        )
        await consumer.seek_back(stalled)
        self.stall_watch.seeked(await consumer.partition_progress())

    async def on_partitions_assigned(self, sender: Any, assigned: Iterable[Any], **_: Any) -> None:
        self.worker.assigned((tp.topic, tp.partition) for tp in assigned)

    async def on_partitions_revoked(self, sender: Any, revoked: Iterable[Any], **_: Any) -> None:
        self.revocations += 1
        partitions = [(tp.topic, tp.partition) for tp in revoked]
        released = self.worker.revoke(partitions)
        self._ack(released)
        self.dead_letter_acks.forget_partitions(partitions)
        for tp in partitions:
            self.dead_letter_outage.cleared(tp)
        if released.files:
            log.info("flushed %d bronze files of revoked partitions", len(released.files))
        await self._commit()

    async def on_before_shutdown(self, sender: Any = None, **_: Any) -> None:
        released = self.worker.close()
        self._ack(released)
        log.info("shutdown: flushed %d bronze files", len(released.files))
        await self._commit()
        await self.discovery.close()

    def _ack(self, released: Released) -> None:
        self.dead_letter_acks.ack(released.tokens)

    def _revoked_since(self, revocations: int, message: Any) -> bool:
        return self.revocations != revocations or self._stale(message)

    def _stale(self, message: Any) -> bool:
        generation = getattr(message, "generation_id", None)
        return generation is not None and generation != self.app.consumer_generation_id

    async def _commit(self) -> None:
        try:
            await self.app.commit(None)
        except Exception as exc:  # noqa: BLE001 - offsets are committed again later
            log.warning("offset commit failed: %s", exc)


class BronzeApp(faust.App):
    """faust.App that finds the CDC topics before its first subscription."""

    bronze: BronzeRuntime

    def _new_transport(self) -> Any:
        return BronzeTransport(self.conf.broker_consumer, self)

    async def on_first_start(self) -> None:
        Path(self.conf.datadir).mkdir(parents=True, exist_ok=True)  # Faust makes only the leaf
        await super().on_first_start()

    async def on_start(self) -> None:
        await super().on_start()
        conductor: Any = self.topics
        conductor._resubscribe_sleep_lock_seconds = RESUBSCRIBE_DELAY_SECONDS
        # Only a running app has a producer (its child, started after this returns and before
        # the agents), so the dead-letter topic copy is switched on here, not in create_app().
        settings = self.bronze.settings
        dead_letter_topic = settings.dead_letter_topic
        bootstrap = settings.kafka.bootstrap_servers

        async def send(
            topic: str, key: bytes | None, value: bytes | None, headers: list[Any]
        ) -> Any:
            return await self.producer.send_and_wait(
                topic, key=key, value=value, partition=None, timestamp=None, headers=headers
            )

        async def ensure_topic() -> None:
            await ensure_dead_letter_topic(
                bootstrap,
                dead_letter_topic,
                max_message_bytes=settings.bronze_max_message_bytes + DEAD_LETTER_HEADROOM_BYTES,
            )

        self.bronze.enable_dead_letter_topic(
            DeadLetterPublisher(dead_letter_topic, send, ensure_topic=ensure_topic)
        )
        # Children (consumer, agents, conductor) start after this returns, so the topics found
        # here are in the first subscription and need no second rebalance. Without a leader
        # topic there is nothing else to subscribe to, and Faust starts its timers (discovery
        # among them) only once partitions were assigned, so the app waits here for a topic.
        discovery = self.bronze.discovery
        await discovery.refresh()
        if not self.bronze.directory.names():
            log.info(
                "no CDC topic matching %s yet; waiting for Debezium to create one",
                self.bronze.directory.pattern.pattern,
            )
        while not self.bronze.directory.names() and not self.should_stop:
            await self.sleep(DISCOVERY_INTERVAL_SECONDS)
            await discovery.refresh()


# The consumer side of the app's Faust settings (`benchmarks/bronze_throughput.py` runs a bare
# Faust app with them to measure Faust alone).
CONSUMER_SETTINGS: dict[str, Any] = {
    # How long a crashed or frozen worker keeps its partitions before the group coordinator
    # evicts it and a survivor takes them over: Faust's default 60 s would stall them a minute.
    # 10 s is 10 heartbeats, above the broker's group.min.session.timeout.ms (6 s).
    "broker_session_timeout": 10,
    "broker_heartbeat_interval": 1,
    "broker_commit_interval": 1.0,
    "broker_commit_every": 1000,
    "consumer_auto_offset_reset": "earliest",
    # Buffered events are acked only by the flushes on revocation and shutdown, which Faust's
    # wait for an empty stream would run after.
    "stream_wait_empty": False,
}


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    worker: BronzeWorker | None = None,
) -> BronzeApp:
    """The bronze Faust app for `settings` (loaded from the environment when None)."""
    if settings is None:
        settings = load_settings()
    bronze = settings.bronze
    app = BronzeApp(
        bronze.app_id,
        broker=broker_urls(settings.kafka.bootstrap_servers),
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        autodiscover=False,
        datadir=str(settings.state_dir.resolve() / "faust"),
        web_enabled=bool(bronze.web_port),
        web_port=bronze.web_port or 6066,
        web_bind="127.0.0.1",
        **CONSUMER_SETTINGS,
        # Dead letters are published with the record's own bytes, up to max_message_bytes.
        producer_max_request_size=max(
            1024 * 1024, settings.bronze_max_message_bytes + DEAD_LETTER_HEADROOM_BYTES
        ),
        # Kafka returns at least one batch per partition even above the fetch size (KIP-74),
        # but a fetch sized for the largest record avoids one round trip per large record.
        consumer_max_fetch_size=settings.kafka.max_record_bytes,
        topic_partitions=1,
        topic_replication_factor=1,
        # binlake elects no leader; the leader topic's partition, empty, shared every fetch
        # with the data and held it for the driver's fixed 1.5 s fetch wait (half the
        # throughput, benchmarks/README.md).
        topic_disable_leader=True,
    )
    runtime = BronzeRuntime(app, settings, clock=clock, worker=worker)
    app.bronze = runtime
    topic = DiscoveredTopic(
        app,
        directory=runtime.directory,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        allow_empty=True,
    )

    async def bronze_writer(stream: faust.StreamT) -> None:
        async for event in stream.noack().events():
            await runtime.on_event(event)

    runtime.agent = app.agent(topic, name="bronze_writer")(bronze_writer)
    tick_seconds = min(0.1, bronze.flush_seconds / 4)
    app.timer(tick_seconds, name="bronze_age_rotation")(runtime.on_tick)
    app.timer(DISCOVERY_INTERVAL_SECONDS, name="bronze_topic_discovery")(runtime.discover)
    app.timer(STALL_CHECK_SECONDS, name="bronze_stall_watch")(runtime.watch_stalls)
    app.on_partitions_assigned.connect(runtime.on_partitions_assigned)
    app.on_partitions_revoked.connect(runtime.on_partitions_revoked)
    app.on_before_shutdown.connect(runtime.on_before_shutdown)
    return app


def broker_urls(bootstrap_servers: str) -> list[str]:
    """Faust broker URLs for a Kafka `host:port[,host:port...]` bootstrap list."""
    return [
        f"kafka://{server.strip()}" for server in bootstrap_servers.split(",") if server.strip()
    ]


def _millis(timestamp: float | None) -> int | None:
    return None if timestamp is None else round(timestamp * 1000)


def _headers(headers: Any) -> tuple[tuple[str, bytes | None], ...]:
    """A Kafka message's headers as (name, value) pairs, whatever shape Faust gives them in.

    A header's value may be null in Kafka; it stays None.
    """
    if not headers:
        return ()
    items = headers.items() if hasattr(headers, "items") else headers
    return tuple((str(name), None if value is None else bytes(value)) for name, value in items)


@cache
def _retry_backoff(first: float, longest: float) -> Backoff:
    # Built from the module's constants at each retry, not once, so tests can shorten them.
    return Backoff(first=first, longest=longest)


def _is_retriable(exc: Exception) -> bool:
    return isinstance(exc, RetriableError)


def _where(record: KafkaRecord) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset


app = create_app()
bronze_writer = app.bronze.agent


def main(argv: Sequence[str] | None = None) -> None:
    """Run the bronze worker in the foreground (`binlake worker`)."""
    if argv is None:
        argv = ["worker", "-l", "info"]
        if not app.conf.web_enabled:
            argv.append("--without-web")
    sys.argv = [sys.argv[0] if sys.argv else "binlake-worker", *argv]
    app.main()


if __name__ == "__main__":
    main()

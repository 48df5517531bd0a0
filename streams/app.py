"""The Faust app of the bronze worker: every CDC topic in, bronze Parquet + manifest out.

Run it with `binlake worker` (which calls `main()`), or with Faust's own CLI:
`faust -A streams.app worker -l info --without-web`. Settings come from `BINLAKE_*` environment
variables (see `binlake.settings`), loaded once, in `create_app()`, when this module is imported.

How it fits Faust:

* One agent reads every topic named `<prefix>.<db>.<table>`. Faust's own pattern subscription
  (`app.topic(pattern=...)`) subscribes to nothing (faust-streaming/faust#62; the aiokafka driver's
  `subscribe()` passes only topic names), so `TopicDiscovery` lists the broker's topics every
  `DISCOVERY_INTERVAL_SECONDS`, keeps those matching the pattern in a `TopicDirectory`, and a
  `DiscoveredTopic` (a Faust topic whose names are the directory's) makes Faust subscribe to
  them. Topics Debezium creates after the worker started are picked up the same way.
* The agent iterates with `noack()` and acks an event itself only once the bronze file holding
  it is in the manifest (dead-lettered, schema-change and already-in-bronze records are acked
  in offset order with the rows around them). Faust commits acked offsets every
  `broker_commit_interval`, and only up to the first offset not acked, so a record that waits
  holds back the commit of its partition.
* A dead-lettered record is acked only once its copy is on the dead-letter topic as well as in
  the lake (`streams.dead_letter`); the agent publishes it with the app's own producer before it
  reads the next record. The topic copy is on when the app runs as a worker (`on_start`);
  driven without a broker (`agent.test_context()`) only the lake copy is made.
* Storage outages (the lake unwritable: permissions, a missing directory, a full disk) make the
  agent retry the same record with backoff while nothing is acked, so no offset is committed
  past what the manifest holds; the log gets one error per outage, reminders while it lasts and
  one line when it is over (`streams.outage.Outage`). So does a dead-letter topic the
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

import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from functools import cache, partial
from pathlib import Path
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from binlake.errors import RetriableError, StorageUnavailableError
from binlake.retry import Backoff, RetryAbandonedError, retry_with_backoff_async
from binlake.settings import Settings, load_settings
from streams.bronze_worker import BronzeWorker, KafkaRecord
from streams.dead_letter import DeadLetter, DeadLetterPublisher
from streams.faust_transport import BronzeTransport
from streams.outage import Outage
from streams.partition_writer import Released

log = logging.getLogger(__name__)

# How often the broker's topic list is read to find new CDC topics.
DISCOVERY_INTERVAL_SECONDS = 1.0
# Faust waits this long after a subscription change before resubscribing (its default is 45 s).
RESUBSCRIBE_DELAY_SECONDS = 0.2
# A requested resubscription that has not happened after this long is requested again
# (Faust drops a change requested while the group is rebalancing).
RESUBSCRIBE_RETRY_SECONDS = 20.0
# Backoff while storage or the dead-letter topic is unavailable (the stream waits; nothing is
# skipped).
RETRY_MIN_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0
# Kafka error code of CreateTopics for a topic that exists already.
TOPIC_ALREADY_EXISTS = 36
# Headroom above bronze.max_message_bytes for the dead-letter producer's request size: the
# dead-letter headers and the record batch framing come on top of the record's own bytes.
DEAD_LETTER_HEADROOM_BYTES = 64 * 1024


def cdc_topic_pattern(topic_prefix: str) -> re.Pattern[str]:
    """Topics Debezium writes row changes to: `<prefix>.<db>.<table>` (not the DDL topic)."""
    return re.compile(rf"^{re.escape(topic_prefix)}\.[^.]+\.[^.]+$")


class TopicDirectory:
    """The CDC topics found so far: names matching `pattern`, a set that only grows."""

    def __init__(self, pattern: re.Pattern[str]):
        self.pattern = pattern
        self._names: list[str] = []
        self._known: set[str] = set()

    def names(self) -> list[str]:
        return list(self._names)

    def offer(self, names: Iterable[str]) -> list[str]:
        """Add the matching names not known yet; returns them, sorted."""
        new = sorted({n for n in names if n not in self._known and self.pattern.match(n)})
        if new:
            self._known.update(new)
            self._names = sorted(self._known)
        return new


class DiscoveredTopic(faust.Topic):
    """A Faust topic whose names are those of a `TopicDirectory`, shared by all its clones.

    Faust reads `topic.topics` whenever it (re)builds its subscription and its routing of
    partitions to streams, so names added to the directory are used at the next resubscription.
    """

    def __init__(self, app: faust.App, *, directory: TopicDirectory, **kwargs: Any):
        self.directory = directory
        super().__init__(app, **kwargs)

    @property  # type: ignore[override]
    def topics(self) -> Sequence[str]:
        return self.directory.names()

    @topics.setter
    def topics(self, names: Sequence[str] | None) -> None:
        self.directory.offer(names or ())

    def _clone_args(self) -> dict[str, Any]:
        return {**super()._clone_args(), "directory": self.directory}


class TopicDiscovery:
    """Finds CDC topics on the broker and gets Faust to subscribe to new ones."""

    def __init__(
        self,
        app: faust.App,
        directory: TopicDirectory,
        bootstrap_servers: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.app = app
        self.directory = directory
        self.bootstrap_servers = bootstrap_servers
        self.clock = clock
        self._admin: AIOKafkaAdminClient | None = None
        self._requested: set[str] = set()
        self._requested_at = 0.0
        self._failing = False

    async def refresh(self) -> list[str]:
        """Read the broker's topics; returns the CDC topics seen for the first time."""
        try:
            if self._admin is None:
                self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
                await self._admin.start()
            names = await self._admin.list_topics()
        except Exception as exc:  # noqa: BLE001 - the broker may be down; try again later
            if not self._failing:
                log.warning("cannot list topics on %s: %s", self.bootstrap_servers, exc)
            self._failing = True
            await self.close()
            return []
        self._failing = False
        new = self.directory.offer(names)
        if new:
            log.info("found CDC topics: %s", ", ".join(new))
        self.ensure_subscribed()
        return new

    def ensure_subscribed(self) -> None:
        """Ask Faust to resubscribe if a known topic is not in its subscription."""
        # Faust has no public API for this; these are the conductor's own index of subscribed
        # topic names and the hook that `Conductor.add()` uses to request a resubscription.
        conductor: Any = self.app.topics
        subscribed = conductor._topic_name_index
        missing = {name for name in self.directory.names() if name not in subscribed}
        if not missing:
            return
        now = self.clock()
        if missing <= self._requested and now - self._requested_at < RESUBSCRIBE_RETRY_SECONDS:
            return
        self._requested, self._requested_at = missing, now
        log.info("subscribing to %s", ", ".join(sorted(missing)))
        conductor._flag_changes()

    async def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                await admin.close()
            except Exception as exc:  # noqa: BLE001 - closing a broken client
                log.debug("closing admin client: %s", exc)


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
            consequence="Records wait (nothing is skipped or dead-lettered); retrying with backoff.",
        )
        # Ack tokens (by id) of dead letters not yet on the dead-letter topic, with their
        # partition; a token released meanwhile (by a flush) is held back in `_held`.
        self._unpublished: dict[int, tuple[str, int]] = {}
        self._held: dict[int, Any] = {}

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
        for letter in letters:
            self._unpublished[id(letter.token)] = (letter.topic, letter.partition)
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
                self._forget(letters[index:])
                log.info("%s: revoked while publishing its dead letter, dropped", where)
                return False
            self.dead_letter_outage.cleared(tp)
            self._unpublished.pop(id(letter.token), None)
            held = self._held.pop(id(letter.token), None)
            if held is not None:
                held.ack()
        return True

    def _forget(self, letters: Iterable[DeadLetter]) -> None:
        for letter in letters:
            self._unpublished.pop(id(letter.token), None)
            self._held.pop(id(letter.token), None)

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

    async def on_partitions_assigned(self, sender: Any, assigned: Iterable[Any], **_: Any) -> None:
        self.worker.assigned((tp.topic, tp.partition) for tp in assigned)

    async def on_partitions_revoked(self, sender: Any, revoked: Iterable[Any], **_: Any) -> None:
        self.revocations += 1
        partitions = [(tp.topic, tp.partition) for tp in revoked]
        released = self.worker.revoke(partitions)
        self._ack(released)
        gone = set(partitions)
        for token_id, tp in list(self._unpublished.items()):
            if tp in gone:  # never acked here: the next owner reads and dead-letters it again
                self._unpublished.pop(token_id)
                self._held.pop(token_id, None)
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
        for token in released.tokens:
            if token is None:
                continue
            if id(token) in self._unpublished:
                self._held[id(token)] = token  # acked once its dead letter is published
                continue
            token.ack()

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
        # How long a crashed or frozen worker keeps its partitions before the group coordinator
        # evicts it and a survivor takes them over: Faust's default 60 s would stall them a
        # minute. 10 s is 10 heartbeats, above the broker's group.min.session.timeout.ms (6 s).
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        broker_commit_interval=1.0,
        broker_commit_every=1000,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
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

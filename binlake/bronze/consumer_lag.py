"""Consumer lag of the bronze writer, per captured table: records and seconds not in bronze yet.

Definitions. For the bronze writer's consumer group (``settings.bronze.app_id``) and a captured
table's topic (``<prefix>.<db>.<table>``, every partition):

* **records behind** (``records``): the data records a read_committed reader (the bronze writer
  is one) reads from the group's committed offset up to the partition's last stable offset
  (LSO), summed over partitions. Transaction markers and aborted records take offsets but are
  not records a reader gets, so they never count: a group committed at or after the last data
  record + 1 has lag 0 even when the high watermark is larger (a commit marker follows).
  Records of a transaction still open (at or after the LSO) are not counted either: bronze
  cannot have them yet. Counted exactly by reading the records (values are not decoded) when
  there are at most ``read_cap`` of them per partition; beyond it the figure is a lower bound
  ("at least N", ``exact`` False) and ``at_most`` (LSO - committed offset) an upper bound.
  Records deleted by retention (below the log start) are lost, not behind: the count starts at
  the log start.
* **seconds behind** (``seconds``): the newest source commit on the topic minus the source
  commit of the oldest record not in bronze yet (the first record read from the committed
  offset); 0 when caught up. The newest source commit of a partition is that of its last data
  record before the LSO (Debezium writes a partition in binlog order); of a table, the largest
  over its partitions. A record's commit time is Debezium's ``source.ts_ms`` (the binlog event
  time: when the change was committed at the source; whole seconds on MariaDB), not the Kafka
  record timestamp, which is when Connect produced the record and so hides how far capture
  itself is behind the source, and jumps on a snapshot or a catch-up. Tombstones carry no
  ``source``: for them (and for a value that does not decode) the Kafka record timestamp is
  used. Only two records per lagging partition are decoded.

A table whose topic does not exist yet is reported as ``no topic``; a group without a committed
offset on a partition of the topic as ``no commit`` (records and seconds None, never 0: the
writer has not stored anything yet, or Kafka forgot an idle group's offsets).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import IsolationLevel, KafkaException
from confluent_kafka.admin import OffsetSpec

from binlake.consumer_groups import GroupOffsetsClient, Record
from binlake.errors import ReplayError
from binlake.settings import Settings
from cdc.avro import ConfluentAvroDecoder
from cdc.json_decoding import decode_change

DEFAULT_READ_CAP = 10_000  # records counted per partition before "at least"
TAIL_WINDOW = 64  # offsets read back from the LSO to find the newest record, doubled as needed

State = Literal["ok", "no topic", "no commit"]
# The commit time (epoch ms) of a record: (topic, key, value, Kafka timestamp ms) -> ms.
CommitTime = Callable[[str, bytes | None, bytes | None, int], int]


# -- the arithmetic (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionFacts:
    """What the broker says about one partition, and what a read from the committed offset
    found. `read_records` counts the data records read from max(committed, log_start) towards
    `stable_end`; `read_to_end` says the read reached the LSO (else it stopped at the cap)."""

    partition: int
    committed: int | None
    log_start: int
    stable_end: int  # LSO
    high_watermark: int
    read_records: int = 0
    read_to_end: bool = True
    oldest_pending_ms: int | None = None  # commit time of the first record read
    newest_ms: int | None = None  # commit time of the last data record before the LSO


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    committed: int | None
    stable_end: int
    high_watermark: int
    records: int | None  # None: no commit
    exact: bool
    at_most: int | None  # LSO - first offset to read: markers and aborted records included


def partition_lag(facts: PartitionFacts) -> PartitionLag:
    if facts.committed is None:
        return PartitionLag(
            facts.partition, None, facts.stable_end, facts.high_watermark, None, False, None
        )
    start = max(facts.committed, facts.log_start)
    if start >= facts.stable_end:
        records, exact, at_most = 0, True, 0
    else:
        records, exact, at_most = facts.read_records, facts.read_to_end, facts.stable_end - start
    return PartitionLag(
        facts.partition,
        facts.committed,
        facts.stable_end,
        facts.high_watermark,
        records,
        exact,
        at_most,
    )


@dataclass(frozen=True)
class TableLag:
    table: str
    topic: str
    group: str
    state: State
    records: int | None  # None unless state is "ok"
    exact: bool  # False: `records` is a lower bound ("at least")
    at_most: int | None
    seconds: float | None  # None unless state is "ok", or a commit time could not be read
    oldest_pending_ms: int | None
    newest_ms: int | None
    partitions: tuple[PartitionLag, ...] = ()

    def records_text(self) -> str:
        return records_text(self.state, self.records, self.exact)

    def seconds_text(self) -> str:
        return seconds_text(self.state, self.seconds)


def records_text(state: str, records: int | None, exact: bool) -> str:
    """Lag in records as `binlake status` and the sensors show it; the state when not measured."""
    if state != "ok" or records is None:
        return state
    return f"{records}" if exact else f">= {records}"


def seconds_text(state: str, seconds: float | None) -> str:
    """Lag in seconds, "?" when no commit time could be read; the state when not measured."""
    if state != "ok":
        return state
    return "?" if seconds is None else f"{seconds:.0f} s"


def table_lag(
    table: str, topic: str, group: str, facts: Sequence[PartitionFacts] | None
) -> TableLag:
    """The table's lag from its partitions' facts; `facts` None: the topic does not exist."""
    if facts is None:
        return TableLag(table, topic, group, "no topic", None, False, None, None, None, None)
    partitions = tuple(partition_lag(f) for f in sorted(facts, key=lambda f: f.partition))
    if any(p.records is None for p in partitions):
        return TableLag(
            table, topic, group, "no commit", None, False, None, None, None, None, partitions
        )
    records = sum(p.records or 0 for p in partitions)
    exact = all(p.exact for p in partitions)
    at_most = sum(p.at_most or 0 for p in partitions)
    newest = max((f.newest_ms for f in facts if f.newest_ms is not None), default=None)
    behind = {p.partition for p in partitions if p.records}
    oldest = min(
        (
            f.oldest_pending_ms
            for f in facts
            if f.partition in behind and f.oldest_pending_ms is not None
        ),
        default=None,
    )
    if records == 0:
        seconds: float | None = 0.0
    elif oldest is None or newest is None:
        seconds = None
    else:
        seconds = max(0, newest - oldest) / 1000
    return TableLag(
        table, topic, group, "ok", records, exact, at_most, seconds, oldest, newest, partitions
    )


# -- reading the broker ----------------------------------------------------------------------


def debezium_commit_time(decode: Callable[..., Any], topic_prefix: str) -> CommitTime:
    """A record's ``source.ts_ms`` through `decode` (a cdc decoder), else its Kafka timestamp
    (tombstones, and values that do not decode: lag is still measurable past a dead letter)."""

    def commit_time(topic: str, key: bytes | None, value: bytes | None, timestamp: int) -> int:
        if value is not None:
            try:
                event = decode(key, value, topic=topic, topic_prefix=topic_prefix)
            except Exception:  # noqa: BLE001 - the bronze writer reports bad records; lag goes on
                return timestamp
            if event.source is not None:
                return int(event.source.ts_ms)
        return timestamp

    return commit_time


def commit_time_for(value_format: str, schema_registry_url: str, topic_prefix: str) -> CommitTime:
    """`debezium_commit_time` with the decoder the bronze writer uses for `value_format`."""
    if value_format == "avro":
        decode: Callable[..., Any] = ConfluentAvroDecoder(schema_registry_url).decode_change
    else:
        decode = decode_change
    return debezium_commit_time(decode, topic_prefix)


class LagReader:
    """Reads what `table_lag` needs from one Kafka cluster: offsets through the AdminClient, and
    records only of the partitions behind (values decoded for two records each)."""

    def __init__(
        self,
        client: GroupOffsetsClient,
        commit_time: CommitTime,
        *,
        read_cap: int = DEFAULT_READ_CAP,
    ):
        self.client = client
        self.commit_time = commit_time
        self.read_cap = read_cap

    def topic_partitions(self, topics: Iterable[str]) -> dict[str, list[int]]:
        """Partitions of the topics that exist. The whole listing, not one topic by name: asking
        for a topic by name makes a broker with auto-creation create it."""
        listing = self.client.admin.list_topics(timeout=self.client.timeout).topics
        found = {}
        for topic in topics:
            meta = listing.get(topic)
            if meta is not None and meta.error is None and meta.partitions:
                found[topic] = sorted(meta.partitions)
        return found

    def facts(self, group: str, topic: str, partitions: list[int]) -> list[PartitionFacts]:
        return self.facts_from(topic, self.client.committed(group, topic, partitions))

    def facts_from(self, topic: str, starts: Mapping[int, int | None]) -> list[PartitionFacts]:
        """`facts` of a reader starting at `starts` ({partition: offset, None: no commit}),
        a group's committed offsets or a replay's targets."""
        partitions = sorted(starts)
        log_start = self.client.list_offsets(topic, partitions, OffsetSpec.earliest())
        stable_end = self.client.list_offsets(topic, partitions, OffsetSpec.latest())
        high = self.client.list_offsets(
            topic, partitions, OffsetSpec.latest(), IsolationLevel.READ_UNCOMMITTED
        )
        facts = []
        for p in partitions:
            c = starts[p]
            base = PartitionFacts(p, c, log_start[p], stable_end[p], high[p])
            start = None if c is None else max(c, log_start[p])
            if start is None or start >= stable_end[p]:
                facts.append(base)
                continue
            facts.append(self._read_pending(topic, base, start))
        return facts

    def _read_pending(self, topic: str, base: PartitionFacts, start: int) -> PartitionFacts:
        read = self.client.read_records(topic, base.partition, start, cap=self.read_cap)
        oldest = None if read.first is None else self.commit_time(topic, *read.first)
        last = read.last
        if not read.reached_end:
            last = self._last_record(topic, base.partition, start, base.stable_end) or last
        newest = None if last is None else self.commit_time(topic, *last)
        return PartitionFacts(
            base.partition,
            base.committed,
            base.log_start,
            base.stable_end,
            base.high_watermark,
            read.count,
            read.reached_end,
            oldest,
            newest,
        )

    def _last_record(
        self, topic: str, partition: int, start: int, stable_end: int
    ) -> Record | None:
        """The last data record before the LSO: read back from it, a window doubled until the
        window holds a record (markers and aborted records may fill it)."""
        window = TAIL_WINDOW
        while True:
            begin = max(start, stable_end - window)
            last = self.client.read_records(topic, partition, begin).last
            if last is not None or begin == start:
                return last
            window *= 2


def measure_lag(
    client: GroupOffsetsClient,
    commit_time: CommitTime,
    group: str,
    topics: Mapping[str, str],
    *,
    read_cap: int = DEFAULT_READ_CAP,
) -> list[TableLag]:
    """`group`'s lag on each table of `topics` ({table: topic})."""
    reader = LagReader(client, commit_time, read_cap=read_cap)
    existing = reader.topic_partitions(topics.values())
    lags = []
    for table, topic in topics.items():
        partitions = existing.get(topic)
        facts = None if partitions is None else reader.facts(group, topic, partitions)
        lags.append(table_lag(table, topic, group, facts))
    return lags


def measure_consumer_lag(
    settings: Settings,
    tables: Sequence[str] | None = None,
    *,
    read_cap: int = DEFAULT_READ_CAP,
) -> list[TableLag]:
    """The bronze writer's lag on each table of `tables` (default: every captured table)."""
    kafka = settings.kafka
    return measure_lag(
        GroupOffsetsClient(kafka.bootstrap_servers),
        commit_time_for(kafka.value_format, kafka.schema_registry_url, kafka.topic_prefix),
        settings.bronze.app_id,
        {t: settings.topic_for(t) for t in (settings.tables if tables is None else tables)},
        read_cap=read_cap,
    )


def lag_or_reason(
    measure: Callable[[], list[TableLag]], tables: Iterable[str]
) -> dict[str, TableLag | str]:
    """Each table's lag from `measure`, or, when the broker did not answer, why it is unknown
    (a status or a sensor shows what it can rather than fail)."""
    try:
        return {lag.table: lag for lag in measure()}
    except (KafkaException, ReplayError) as exc:
        reason = f"unknown: {exc}"
        return dict.fromkeys(tables, reason)


@dataclass(frozen=True)
class ConsumerLagProbe:
    """Where to measure a consumer group's lag: the broker, the group and how topics are named."""

    bootstrap_servers: str
    group: str
    topic_prefix: str
    value_format: str = "json"
    schema_registry_url: str = ""
    timeout_seconds: float = 5.0  # a caller waits at most about this for a broker that is down

    def measure(self, tables: Sequence[str]) -> dict[str, TableLag | str]:
        """Each table's lag, or why it is unknown (the broker did not answer)."""
        commit_time = commit_time_for(
            self.value_format, self.schema_registry_url, self.topic_prefix
        )
        client = GroupOffsetsClient(self.bootstrap_servers, timeout=self.timeout_seconds)
        topics = {t: f"{self.topic_prefix}.{t}" for t in tables}
        return lag_or_reason(lambda: measure_lag(client, commit_time, self.group, topics), tables)

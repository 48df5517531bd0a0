"""Resync: re-read one table from the source while streaming goes on, and record it in the lake.

A resync is a Debezium *incremental snapshot*: binlake inserts an ``execute-snapshot`` signal
(``data-collections: [<db>.<table>]``, ``type: incremental``) into the signal table
(``resync.signal_table`` in the first of ``mysql.databases``); the connector reads the table in
chunks of ``resync.chunk_size`` rows by primary key, between watermarks it writes into the same
table, and drops a chunk's row whenever the binlog changed that key inside the chunk's window,
so a re-read row never overwrites a newer streamed change. The rows arrive on the table's
normal topic as snapshot reads (op ``r``, ``source.snapshot = "incremental"``) with the binlog
position of the chunk's close watermark, so bronze keeps them with full provenance and silver
merges them by position like any change.

Debezium reports progress as notifications on ``<prefix>.notifications`` (sink channel), each
carrying the signal's id: STARTED, IN_PROGRESS per chunk, TABLE_SCAN_COMPLETED (with
``total_rows_scanned`` and ``status``) and COMPLETED (verified on Debezium 3.0.7).

What a snapshot cannot do by itself is remove rows the source no longer has: silver's sweep
(``binlake.silver.resync_sweep``) does, once silver has merged everything up to the
resync's end. For that, each state change of a resync is recorded durably in the lake, one
small immutable JSON object per state:

    _resync/<db>.<table>/<id>-requested.json   signal id, binlog position before the signal,
                                               Kafka offsets of the table's topic then
    _resync/<db>.<table>/<id>-completed.json   Debezium's COMPLETED (or ABORTED), rows scanned,
                                               the topic's end offsets once every re-read row
                                               is in Kafka (a fence: ``records_delivered``)
    _resync/<db>.<table>/<id>-swept.json       silver's sweep: keys seen, rows tombstoned

Ids start with the request's UTC time, so a table's resyncs list in the order they were asked.
This module knows nothing of Dagster: the CLI, the Dagster job and sensor, the reconciliation
check and the connector registration all call it.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import pyarrow.fs as pafs
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from binlake.consumer_groups import LIBRDKAFKA_LOG, GroupOffsetsClient
from binlake.errors import BinlakeError, FinalError, RetriableError
from binlake.settings import Settings
from binlake.source_db import connect_source
from binlake.storage import LakeStorage
from cdc.connect_client import ConnectClient, SourceOffset
from cdc.connector_config import notification_topic, signal_table

log = logging.getLogger(__name__)

RESYNC_DIR = "_resync"
REQUESTED, COMPLETED, SWEPT = "requested", "completed", "swept"
EXECUTE_SNAPSHOT = "execute-snapshot"
INCREMENTAL = "incremental"  # Debezium's source.snapshot of an incremental snapshot's reads
NOTIFICATION_AGGREGATE = "Incremental Snapshot"
# Debezium notification types that end an incremental snapshot.
FINISHED_TYPES = ("COMPLETED", "ABORTED")
_NOTIFICATION_POLL_SECONDS = 0.5


class ResyncError(FinalError):
    """A resync that cannot be started or recorded as asked."""


class ResyncInProgressError(ResyncError):
    """A resync of the table is already running (or not yet swept into silver)."""


@dataclass(frozen=True, order=True)
class BinlogPosition:
    """A point in the source's binlog, as ``SHOW MASTER STATUS`` gives it."""

    file: str
    pos: int

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}"


@dataclass(frozen=True)
class ResyncRequest:
    """A resync asked for: the signal sent, and where the binlog and the topic stood before it."""

    id: str
    table: str
    reason: str
    requested_at: str  # ISO 8601 UTC
    signal_position: BinlogPosition  # before the signal: every re-read row comes after it
    topic: str
    start_offsets: dict[int, int]  # partition -> an offset at or before the first re-read row
    notification_offset: int = 0  # where to start reading notifications for this resync

    @property
    def requested_ms(self) -> int:
        return int(datetime.fromisoformat(self.requested_at).timestamp() * 1000)


@dataclass(frozen=True)
class ResyncCompletion:
    """Debezium said the resync is over (COMPLETED, or ABORTED when ``status`` says so)."""

    id: str
    table: str
    completed_at: str  # ISO 8601 UTC, when Debezium sent the notification
    status: str  # SUCCEEDED, or Debezium's status / ABORTED
    rows_scanned: int | None
    end_offsets: dict[int, int]  # partition -> the topic's end after the last re-read row
    # When Connect had committed an offset past the fence: every re-read row was in Kafka.
    in_kafka_at: str = ""

    @property
    def succeeded(self) -> bool:
        # EMPTY: the table has no row (any silver still holds is swept)
        return self.status in ("SUCCEEDED", "EMPTY")


@dataclass(frozen=True)
class ResyncSweep:
    """Silver removed the rows the resync did not see (``binlake.silver.resync_sweep``)."""

    id: str
    table: str
    swept_at: str
    keys_seen: int
    rows_tombstoned: int
    silver_version: int | None
    first_offsets: dict[int, int] = field(default_factory=dict)  # first re-read row, by partition
    last_offsets: dict[int, int] = field(default_factory=dict)  # last re-read row, by partition


@dataclass
class ResyncState:
    """Everything the lake records about one resync."""

    request: ResyncRequest
    completion: ResyncCompletion | None = None
    sweep: ResyncSweep | None = None

    @property
    def pending(self) -> bool:
        """Not over yet: Debezium still reading, or silver not yet swept."""
        if self.completion is None:
            return True
        return self.completion.succeeded and self.sweep is None

    @property
    def stage(self) -> str:
        if self.sweep is not None:
            return "swept"
        if self.completion is None:
            return "snapshotting"
        if not self.completion.succeeded:
            return f"ended {self.completion.status}"
        return "waiting for silver's sweep"


def new_resync_id(now: datetime | None = None) -> str:
    moment = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{moment}-{uuid.uuid4().hex[:8]}"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


# ---------------------------------------------------------------------------------------------
# The records in the lake


def _record_path(table: str, resync_id: str, state: str) -> str:
    return f"{RESYNC_DIR}/{table}/{resync_id}-{state}.json"


def _to_json(record: object) -> bytes:
    data = asdict(record)  # type: ignore[call-overload]
    return (json.dumps(data, sort_keys=True, indent=1) + "\n").encode()


def _partitions(raw: Mapping[str, int]) -> dict[int, int]:
    return {int(p): int(o) for p, o in raw.items()}


def _request_from(data: dict) -> ResyncRequest:
    position = data["signal_position"]
    return ResyncRequest(
        id=data["id"],
        table=data["table"],
        reason=data["reason"],
        requested_at=data["requested_at"],
        signal_position=BinlogPosition(position["file"], int(position["pos"])),
        topic=data["topic"],
        start_offsets=_partitions(data["start_offsets"]),
        notification_offset=int(data.get("notification_offset", 0)),
    )


def _completion_from(data: dict) -> ResyncCompletion:
    return ResyncCompletion(
        id=data["id"],
        table=data["table"],
        completed_at=data["completed_at"],
        status=data["status"],
        rows_scanned=data.get("rows_scanned"),
        end_offsets=_partitions(data["end_offsets"]),
        in_kafka_at=data.get("in_kafka_at", ""),
    )


def _sweep_from(data: dict) -> ResyncSweep:
    return ResyncSweep(
        id=data["id"],
        table=data["table"],
        swept_at=data["swept_at"],
        keys_seen=int(data["keys_seen"]),
        rows_tombstoned=int(data["rows_tombstoned"]),
        silver_version=data.get("silver_version"),
        first_offsets=_partitions(data.get("first_offsets", {})),
        last_offsets=_partitions(data.get("last_offsets", {})),
    )


class ResyncLog:
    """The resync records of the lake (``_resync/``)."""

    def __init__(self, storage: LakeStorage):
        self.storage = storage

    @classmethod
    def of(cls, settings: Settings) -> ResyncLog:
        return cls(LakeStorage.from_settings(settings))

    def _write_once(self, relative: str, data: bytes) -> bool:
        """Write an immutable record; False (and nothing written) if it exists already."""
        if self.storage.exists(relative):
            return False
        self.storage.write_atomic(relative, data)
        return True

    def _read(self, relative: str) -> dict | None:
        if not self.storage.exists(relative):
            return None
        try:
            return json.loads(self.storage.read_bytes(relative))
        except (ValueError, KeyError) as exc:
            raise FinalError(f"resync record {self.storage.full_path(relative)}: {exc}") from exc

    def record_request(self, request: ResyncRequest) -> None:
        self._write_once(_record_path(request.table, request.id, REQUESTED), _to_json(request))

    def record_completion(self, completion: ResyncCompletion) -> bool:
        """Record Debezium's end of the resync; False if another watcher recorded it first."""
        path = _record_path(completion.table, completion.id, COMPLETED)
        return self._write_once(path, _to_json(completion))

    def record_sweep(self, sweep: ResyncSweep) -> bool:
        return self._write_once(_record_path(sweep.table, sweep.id, SWEPT), _to_json(sweep))

    def ids(self, table: str) -> list[str]:
        """Ids of every resync of `table` ever requested, oldest first."""
        selector = pafs.FileSelector(
            self.storage.full_path(f"{RESYNC_DIR}/{table}"), allow_not_found=True
        )
        suffix = f"-{REQUESTED}.json"
        names = [
            info.base_name[: -len(suffix)]
            for info in self.storage.filesystem.get_file_info(selector)
            if info.base_name.endswith(suffix)
        ]
        return sorted(names)

    def state(self, table: str, resync_id: str) -> ResyncState:
        raw = self._read(_record_path(table, resync_id, REQUESTED))
        if raw is None:
            raise ResyncError(f"no resync {resync_id} of {table} is recorded in the lake")
        completion = self._read(_record_path(table, resync_id, COMPLETED))
        sweep = self._read(_record_path(table, resync_id, SWEPT))
        return ResyncState(
            request=_request_from(raw),
            completion=None if completion is None else _completion_from(completion),
            sweep=None if sweep is None else _sweep_from(sweep),
        )

    def states(self, table: str) -> list[ResyncState]:
        return [self.state(table, resync_id) for resync_id in self.ids(table)]

    def pending(self, table: str) -> list[ResyncState]:
        """Resyncs of `table` not over yet (snapshotting, or waiting for silver's sweep)."""
        return [s for s in self.states(table) if s.pending]


def resync_in_progress(settings: Settings, table: str) -> ResyncState | None:
    """The resync of `table` still running or waiting for silver's sweep, if any."""
    pending = ResyncLog.of(settings).pending(table)
    return pending[-1] if pending else None


RETRY_REASON = "retry of "
UNKNOWN_SCHEMA = "UNKNOWN_SCHEMA"


def resync_again_if_schema_unknown(settings: Settings, state: ResyncState) -> ResyncRequest | None:
    """Request once more a resync Debezium ended UNKNOWN_SCHEMA, if it is the table's newest.

    Debezium answers UNKNOWN_SCHEMA when the task that read the signal did not capture the table:
    a signal sent while the connector was being reconfigured to add it (the old task still ran)
    is read by the old task. A second resync, later, is read by the new one. Only once.
    """
    completion = state.completion
    if completion is None or completion.status != UNKNOWN_SCHEMA:
        return None
    if state.request.reason.startswith(RETRY_REASON):
        return None
    if ResyncLog.of(settings).ids(state.request.table)[-1] != state.request.id:
        return None  # asked again already
    return request_resync(
        settings,
        state.request.table,
        reason=f"{RETRY_REASON}{state.request.id} ({UNKNOWN_SCHEMA}): {state.request.reason}",
    )


def give_up(settings: Settings, state: ResyncState, status: str) -> bool:
    """Record that `state`'s resync will not be waited for (`status`, e.g. ABANDONED: Debezium
    never acted on its signal; SUPERSEDED: it began before a schema change it cannot heal), so
    it no longer blocks the table's next resync. Its rows, if any come, merge like any change.
    False if its end was recorded first."""
    completion = ResyncCompletion(
        state.request.id, state.request.table, _now_iso(), status, None, {}
    )
    given_up = ResyncLog.of(settings).record_completion(completion)
    if given_up:
        log.warning("resync %s of %s: %s", state.request.id, state.request.table, status)
    return given_up


# ---------------------------------------------------------------------------------------------
# Starting a resync


def signal_row(resync_id: str, table: str) -> tuple[str, str, str]:
    """(id, type, data) of the signal table row asking for an incremental snapshot of `table`."""
    data = {"data-collections": [table], "type": INCREMENTAL}
    return resync_id, EXECUTE_SNAPSHOT, json.dumps(data)


def request_resync(
    settings: Settings,
    table: str,
    *,
    reason: str,
    kafka: GroupOffsetsClient | None = None,
) -> ResyncRequest:
    """Ask Debezium to re-read `table` (an incremental snapshot) and record the request.

    Refused (``ResyncInProgressError``) while a resync of `table` is running or not yet swept
    into silver: two at once would make neither's end meaningful.
    """
    if table not in settings.tables:
        raise ResyncError(
            f"{table!r} is not a captured table; the captured tables are {settings.tables}"
        )
    resync_log = ResyncLog.of(settings)
    running = resync_log.pending(table)
    if running:
        state = running[-1]
        raise ResyncInProgressError(
            f"a resync of {table} is in progress: {state.request.id} (requested "
            f"{state.request.requested_at}, {state.stage}); wait for it to end"
        )
    kafka = kafka or GroupOffsetsClient(settings.kafka.bootstrap_servers)
    topic = settings.topic_for(table)
    start_offsets = _start_offsets(kafka, topic)
    notifications = notification_topic(settings.kafka.topic_prefix)
    notification_offset = _start_offsets(kafka, notifications).get(0, 0)
    resync_id = new_resync_id()
    requested_at = _now_iso()
    try:
        position = _insert_signal(settings, signal_row(resync_id, table))
    except BinlakeError:
        raise
    except Exception as exc:  # pymysql errors: the source or the signal table is not there
        raise RetriableError(
            f"cannot insert the resync signal for {table} into {signal_table(settings)}: {exc}"
        ) from exc
    request = ResyncRequest(
        id=resync_id,
        table=table,
        reason=reason,
        requested_at=requested_at,
        signal_position=position,
        topic=topic,
        start_offsets=start_offsets,
        notification_offset=notification_offset,
    )
    resync_log.record_request(request)
    log.info("resync %s of %s requested (%s) at %s", resync_id, table, reason, position)
    return request


def _start_offsets(kafka: GroupOffsetsClient, topic: str) -> dict[int, int]:
    """Per partition, an offset at or before the topic's end (0 for a topic not created yet).

    The low watermark would do; the one below the high watermark keeps the sweep's read short.
    Either is at or before the first re-read row.
    """
    # The whole listing, not `list_topics(topic=...)`: asking for one topic by name makes a
    # broker with auto-creation create it, with its default partition count, before Debezium
    # creates it with its own settings (seen: a new table's topic got four partitions).
    found = kafka.admin.list_topics(timeout=kafka.timeout).topics.get(topic)
    partitions = sorted(found.partitions) if found is not None and found.error is None else []
    if not partitions:
        return {0: 0}
    consumer = Consumer(_reader_config(kafka.bootstrap_servers))
    try:
        offsets: dict[int, int] = {}
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            offsets[partition] = max(low, high - 1, 0)
        return offsets
    finally:
        consumer.close()


def _insert_signal(settings: Settings, row: tuple[str, str, str]) -> BinlogPosition:
    """Insert the signal as the CDC user; the binlog position just before it."""
    db, name = signal_table(settings).split(".")
    with connect_source(settings) as conn, conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        status = cur.fetchone()
        if status is None:
            raise ResyncError(
                f"the source at {settings.mysql.host}:{settings.mysql.port} has no binlog "
                "(SHOW MASTER STATUS is empty)"
            )
        position = BinlogPosition(str(status[0]), int(status[1]))
        cur.execute(f"INSERT INTO `{db}`.`{name}` (id, type, data) VALUES (%s, %s, %s)", row)
    return position


# ---------------------------------------------------------------------------------------------
# Learning that a resync is over


@dataclass(frozen=True)
class Notification:
    """One Debezium notification (``<prefix>.notifications``)."""

    id: str
    aggregate_type: str
    type: str
    additional_data: dict[str, str]
    timestamp_ms: int

    @classmethod
    def from_record(cls, value: bytes | None) -> Notification | None:
        """Parse a notification record (JSON with or without the schema envelope)."""
        if not value:
            return None
        try:
            data = json.loads(value)
        except ValueError:
            return None
        if isinstance(data, dict) and "payload" in data and "schema" in data:
            data = data["payload"]
        if not isinstance(data, dict) or "id" not in data or "type" not in data:
            return None
        return cls(
            id=str(data["id"]),
            aggregate_type=str(data.get("aggregate_type", "")),
            type=str(data["type"]),
            additional_data={
                str(k): str(v) for k, v in (data.get("additional_data") or {}).items()
            },
            timestamp_ms=int(data.get("timestamp") or 0),
        )


def _reader_config(bootstrap_servers: str) -> dict[str, object]:
    return {
        "bootstrap.servers": bootstrap_servers,
        "group.id": "binlake-resync-reader",  # never joined: partitions are assigned
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 100,  # a read here waits on a quiet topic: answer quickly
        "logger": LIBRDKAFKA_LOG,
    }


def read_notifications(
    bootstrap_servers: str, topic: str, start: int = 0, idle_seconds: float = 3.0
) -> Iterator[Notification]:
    """Notifications on `topic` (partition 0) from offset `start` to its current end."""
    consumer = Consumer(_reader_config(bootstrap_servers))
    try:
        consumer.assign([TopicPartition(topic, 0, start)])
        idle = 0.0
        while idle < idle_seconds:
            message = consumer.poll(_NOTIFICATION_POLL_SECONDS)
            if message is None:
                idle += _NOTIFICATION_POLL_SECONDS
                continue
            error = message.error()
            if error is not None:
                if error.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    return
                raise RetriableError(f"cannot read notifications from {topic}: {error.str()}")
            idle = 0.0
            notification = Notification.from_record(message.value())
            if notification is not None:
                yield notification
    finally:
        consumer.close()


@dataclass(frozen=True)
class ResyncProgress:
    """What the notifications say about one resync so far."""

    started: bool = False
    last_processed_key: str | None = None
    maximum_key: str | None = None
    rows_scanned: int | None = None
    status: str | None = None  # of TABLE_SCAN_COMPLETED
    finished: str | None = None  # COMPLETED or ABORTED
    finished_ms: int | None = None


def progress_of(
    resync_id: str, table: str, notifications: Iterable[Notification]
) -> ResyncProgress:
    """Fold the notifications of the incremental snapshot `resync_id` into its progress."""
    progress = ResyncProgress()
    for n in notifications:
        if n.id != resync_id or n.aggregate_type != NOTIFICATION_AGGREGATE:
            continue
        data = n.additional_data
        if n.type == "STARTED":
            progress = _replace(progress, started=True)
        elif n.type == "IN_PROGRESS":
            progress = _replace(
                progress,
                started=True,
                last_processed_key=data.get("last_processed_key"),
                maximum_key=data.get("maximum_key"),
            )
        elif n.type == "TABLE_SCAN_COMPLETED" and data.get("scanned_collection", table) == table:
            rows = data.get("total_rows_scanned")
            progress = _replace(
                progress,
                rows_scanned=None if rows is None else int(rows),
                status=data.get("status"),
            )
        elif n.type in FINISHED_TYPES:
            progress = _replace(progress, finished=n.type, finished_ms=n.timestamp_ms)
    return progress


def _replace(progress: ResyncProgress, **changes: object) -> ResyncProgress:
    return ResyncProgress(**{**asdict(progress), **changes})  # type: ignore[arg-type]


def completion_of(
    request: ResyncRequest,
    progress: ResyncProgress,
    end_offsets: dict[int, int],
    in_kafka_at: str = "",
) -> ResyncCompletion:
    """The completion record of a resync whose notifications say it is over."""
    assert progress.finished is not None
    status = progress.status or ("SUCCEEDED" if progress.finished == "COMPLETED" else "")
    if progress.finished == "ABORTED":
        status = "ABORTED"
    finished = datetime.fromtimestamp((progress.finished_ms or 0) / 1000, tz=UTC)
    return ResyncCompletion(
        id=request.id,
        table=request.table,
        completed_at=finished.isoformat(),
        status=status,
        rows_scanned=progress.rows_scanned,
        end_offsets=end_offsets,
        in_kafka_at=in_kafka_at,
    )


def check_completion(
    settings: Settings,
    request: ResyncRequest,
    *,
    fence_timeout_s: float = 40.0,
) -> tuple[ResyncProgress, ResyncCompletion | None]:
    """Read the notifications once; if Debezium says the resync is over, record its end.

    COMPLETED comes on a topic of its own, before Connect's producer may have delivered the
    last re-read rows to the table's topic. So the end is recorded only once every record
    Debezium emitted before it is in Kafka (``records_delivered``); then the table topic's ends
    are at or past the last re-read row. None when not over (or not delivered) yet.
    """
    topic = notification_topic(settings.kafka.topic_prefix)
    progress = progress_of(
        request.id,
        request.table,
        read_notifications(settings.kafka.bootstrap_servers, topic, request.notification_offset),
    )
    if progress.finished is None:
        return progress, None
    if not records_delivered(settings, request.id, timeout_s=fence_timeout_s):
        return progress, None
    delivered = datetime.now(UTC)
    end_offsets: dict[int, int] = {}
    for partition in sorted(request.start_offsets):
        end = end_after(
            settings.kafka.bootstrap_servers,
            request.topic,
            partition,
            int(delivered.timestamp() * 1000) + CLOCK_SKEW_MS,
        )
        if end is None:
            return progress, None
        end_offsets[partition] = end
    in_kafka_at = delivered.isoformat()
    completion = completion_of(request, progress, end_offsets, in_kafka_at)
    resync_log = ResyncLog.of(settings)
    if not resync_log.record_completion(completion):
        # another watcher (the sensor, the CLI) was first: its record is the one that counts
        state = resync_log.state(request.table, request.id)
        assert state.completion is not None
        completion = state.completion
    return progress, completion


# Records stamped this long after binlake saw every re-read row delivered were sent after them,
# whatever the skew between binlake's clock and Kafka Connect's.
CLOCK_SKEW_MS = 5_000
_NO_SUCH_PARTITION = (
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
)
END_READ_SECONDS = 60.0


def end_after(
    bootstrap_servers: str,
    topic: str,
    partition: int,
    after_ms: int,
    *,
    idle_seconds: float = 2.0,
    max_seconds: float = END_READ_SECONDS,
) -> int | None:
    """An offset of `topic`[`partition`] past every record delivered before `after_ms`.

    Read from just below the high watermark (the last offset may be a transaction's commit
    marker, which a read_committed reader never gets: then the read ends at once) to the end of
    the partition, or, on a busy table whose end keeps moving, to the first record
    stamped after `after_ms`. None if neither was reached within `max_seconds`.
    """
    consumer = Consumer(_reader_config(bootstrap_servers))
    try:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        except KafkaException as exc:
            if exc.args[0].code() in _NO_SUCH_PARTITION:
                return 0  # Debezium never wrote to the topic: nothing of the resync is in it
            raise RetriableError(f"cannot read the end of {topic}[{partition}]: {exc}") from exc
        end = max(low, high - 1, 0)
        consumer.assign([TopicPartition(topic, partition, end)])
        deadline = time.monotonic() + max_seconds
        idle = 0.0
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                idle += 0.5
                if idle >= idle_seconds:
                    return end  # nothing more came: the end of the partition
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return end
                raise RetriableError(f"cannot read {topic}[{partition}]: {error.str()}")
            idle = 0.0
            end = message.offset() + 1
            if message.timestamp()[1] > after_ms:
                return end
        return None
    finally:
        consumer.close()


def fence_row(resync_id: str) -> tuple[str, str, str]:
    """A signal Debezium only logs: a binlog event after everything the resync emitted."""
    message = {"message": f"binlake resync {resync_id}: fence"}
    return f"{resync_id}-fence-{uuid.uuid4().hex[:8]}", "log", json.dumps(message)


def committed_position(offsets: Iterable[SourceOffset]) -> BinlogPosition | None:
    """The binlog position of the connector's committed source offset, if it has one."""
    for entry in offsets:
        offset = entry.offset
        if "file" in offset and "pos" in offset:
            return BinlogPosition(str(offset["file"]), int(offset["pos"]))  # type: ignore[call-overload]
    return None


def records_delivered(settings: Settings, resync_id: str, *, timeout_s: float) -> bool:
    """Whether every record Debezium emitted so far is in Kafka.

    A fence signal is written to the binlog after now; Connect commits a source offset only
    once every record before it was acknowledged by the broker, so a committed binlog position
    at or past the fence proves it. While only the signal table changes, Debezium's heartbeat
    (``heartbeat.interval.ms``) carries the position on; a fence is written every second so the
    heartbeat has an event to come with.
    """
    deadline = time.monotonic() + timeout_s
    fence = _insert_signal(settings, fence_row(resync_id))
    with ConnectClient(settings.connect.url) as connect:
        while True:
            committed = committed_position(connect.get_offsets(settings.connect.connector_name))
            if committed is not None and committed >= fence:
                return True
            if time.monotonic() > deadline:
                log.info("resync %s: Connect has not committed past %s yet", resync_id, fence)
                return False
            time.sleep(1.0)
            _insert_signal(settings, fence_row(resync_id))


def wait_for_completion(
    settings: Settings,
    request: ResyncRequest,
    *,
    timeout_s: float,
    poll_s: float = 2.0,
    on_progress: Callable[[ResyncProgress], None] = lambda progress: None,
) -> ResyncCompletion:
    """Block until Debezium says the resync is over, then return (and record) its end."""
    deadline = time.monotonic() + timeout_s
    while True:
        progress, completion = check_completion(settings, request)
        on_progress(progress)
        if completion is not None:
            return completion
        if time.monotonic() > deadline:
            hint = (
                ""
                if progress.started
                else (
                    " and Debezium never started it (is the connector running? is "
                    f"signal.data.collection={signal_table(settings)}?)"
                )
            )
            raise RetriableError(
                f"resync {request.id} of {request.table} not over after {timeout_s:g} s{hint}; "
                "it goes on: the Dagster resync sensor records its end"
            )
        time.sleep(poll_s)


# ---------------------------------------------------------------------------------------------
# Tables added to the connector


def captured_tables(connector_config: Mapping[str, str] | None) -> list[str]:
    """The `<db>.<table>` names of a connector config's table.include.list (unescaped)."""
    if not connector_config:
        return []
    raw = connector_config.get("table.include.list", "")
    return [entry.strip().replace("\\.", ".") for entry in raw.split(",") if entry.strip()]


def tables_added(previous: Mapping[str, str] | None, new: Mapping[str, str]) -> list[str]:
    """Tables the new connector config captures that the previous one did not.

    None when there was no previous config: a new connector's initial snapshot reads them all.
    """
    if previous is None:
        return []
    before = set(captured_tables(previous))
    return [t for t in captured_tables(new) if t not in before]


def resync_added_tables(
    settings: Settings, previous: Mapping[str, str] | None, new: Mapping[str, str]
) -> list[ResyncRequest]:
    """Start a resync of each table the new connector config adds: their existing rows."""
    requests = []
    for table in tables_added(previous, new):
        if table in settings.tables:
            requests.append(request_resync(settings, table, reason="table added to the connector"))
    return requests

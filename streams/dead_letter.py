"""Records that cannot become bronze rows, kept byte for byte so nothing is silently lost.

A rejected record goes to two places, both written before the record is acked:

* the lake: a small JSON file `bronze/_dead_letter/<topic>+<partition>+<offset>.json` holding the
  record's original key, value and headers (base64), where it came from, why it was rejected and
  when. The name depends only on the record's position, so handling the same record again (after
  a restart) rewrites the same file instead of adding another. Files are written atomically.
* the dead-letter Kafka topic (`Settings.dead_letter_topic`): the original key and value bytes,
  the original headers plus `binlake.dlq.*` headers saying where the record came from and why it
  was rejected, so consumers of that topic can alert on and replay bad records without reading
  the lake. Kafka delivery is at least once: a record read again after a crash is published
  again (the lake copy is simply rewritten).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from binlake.bronze.layout import DEAD_LETTER_DIR, OFFSET_DIGITS
from binlake.storage import LakeStorage

Headers = tuple[tuple[str, bytes | None], ...]  # a Kafka header value may be null

# Header names on the dead-letter topic (Kafka Connect's DLQ uses `__connect.errors.*` alike).
HEADER_TOPIC = "binlake.dlq.topic"
HEADER_PARTITION = "binlake.dlq.partition"
HEADER_OFFSET = "binlake.dlq.offset"
HEADER_TIMESTAMP = "binlake.dlq.timestamp_ms"
HEADER_REASON = "binlake.dlq.reason"
HEADER_ERROR = "binlake.dlq.error"
HEADER_PATH = "binlake.dlq.lake_path"
HEADER_OMITTED = "binlake.dlq.omitted"
HEADER_NULL = "binlake.dlq.null"  # "key", "value" or "key,value": null (not empty) in the record

# Characters a topic may keep in a dead-letter file name; anything else is percent-encoded.
_PLAIN_TOPIC = re.compile(r"^[A-Za-z0-9._-]+$")


def dead_letter_path(topic: str, partition: int, offset: int) -> str:
    """Path of a dead letter relative to the lake root.

    Any topic gets a path inside the dead-letter directory: a record is often dead-lettered
    *because* its topic cannot name a bronze file, and its copy must still be kept. Characters
    other than letters, digits, `.`, `_` and `-` (a `/` in particular) are percent-encoded, and
    the name always continues with `+<partition>+<offset>.json`, so no topic (not even `..`) can
    make the path leave `bronze/_dead_letter/`. Plain Kafka topic names are used unchanged.
    """
    if not topic:
        raise ValueError("a dead letter needs the name of the topic its record came from")
    if partition < 0 or offset < 0:
        raise ValueError(f"partition {partition} and offset {offset} must be >= 0")
    name = topic if _PLAIN_TOPIC.match(topic) else quote(topic, safe="")
    return f"{DEAD_LETTER_DIR}/{name}+{partition}+{offset:0{OFFSET_DIGITS}d}.json"


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class DeadLetter:
    """One rejected record: everything both copies of it need."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    error: str | None = None
    timestamp_ms: int | None = None
    headers: Headers = ()
    path: str = ""  # where the lake copy is, relative to the lake root
    token: Any = field(default=None, compare=False)  # the record's ack token

    @property
    def size(self) -> int:
        return len(self.key or b"") + len(self.value or b"")

    def kafka_headers(self) -> list[tuple[str, bytes | None]]:
        """The record's own headers followed by the `binlake.dlq.*` ones."""
        ours: list[tuple[str, bytes | None]] = [
            (HEADER_TOPIC, self.topic.encode()),
            (HEADER_PARTITION, str(self.partition).encode()),
            (HEADER_OFFSET, str(self.offset).encode()),
            (HEADER_REASON, self.reason.encode("utf-8", "backslashreplace")),
        ]
        if self.error:
            ours.append((HEADER_ERROR, self.error.encode()))
        if self.timestamp_ms is not None:
            ours.append((HEADER_TIMESTAMP, str(self.timestamp_ms).encode()))
        if self.path:
            ours.append((HEADER_PATH, self.path.encode()))
        nulls = [name for name, data in (("key", self.key), ("value", self.value)) if data is None]
        if nulls:
            ours.append((HEADER_NULL, ",".join(nulls).encode()))
        return [*self.headers, *ours]


@dataclass
class DeadLetters:
    """Writes dead letters under a lake root."""

    storage: LakeStorage
    wall_clock: Callable[[], float] = time.time

    def write(self, letter: DeadLetter) -> DeadLetter:
        """Durably record one rejected record; returns it with its `path` in the lake."""
        path = dead_letter_path(letter.topic, letter.partition, letter.offset)
        document = {
            "topic": letter.topic,
            "partition": letter.partition,
            "offset": letter.offset,
            "timestamp_ms": letter.timestamp_ms,
            "key_b64": _b64(letter.key),
            "value_b64": _b64(letter.value),
            "headers": [[name, _b64(data)] for name, data in letter.headers],
            "reason": letter.reason,
            "error": letter.error,
            "dead_lettered_at": self.wall_clock(),
        }
        self.storage.write_atomic(path, json.dumps(document, sort_keys=True).encode())
        return dataclasses.replace(letter, path=path)


# send(topic, key, value, headers) -> awaitable that completes once the broker has the record.
Send = Callable[[str, bytes | None, bytes | None, list[tuple[str, bytes | None]]], Awaitable[Any]]


def is_too_large(exc: BaseException) -> bool:
    """True if `exc` (or an error it wraps) says the record exceeds a Kafka size limit."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # aiokafka: MessageSizeTooLargeError (client limit or broker MESSAGE_TOO_LARGE) and
        # RecordTooLargeError; matched by name so this module does not import a Kafka client.
        if type(current).__name__ in ("MessageSizeTooLargeError", "RecordTooLargeError"):
            return True
        current = current.__cause__ or current.__context__
    return False


class DeadLetterPublisher:
    """Publishes dead letters to the dead-letter topic; one attempt per call, the caller retries.

    A record too large for the dead-letter topic (the producer's or the broker's size limit) is
    published once more without its key and value, with a `binlake.dlq.omitted` header naming
    the lake copy that holds them, so an oversized record cannot block its partition forever.
    """

    def __init__(
        self,
        topic: str,
        send: Send,
        *,
        ensure_topic: Callable[[], Awaitable[None]] | None = None,
    ):
        self.topic = topic
        self._send = send
        self._ensure_topic = ensure_topic
        self._topic_ready = ensure_topic is None
        self.published = 0

    async def publish(self, letter: DeadLetter) -> None:
        """Send `letter` and wait until the broker acknowledged it; raises if it did not."""
        if not self._topic_ready:
            assert self._ensure_topic is not None
            await self._ensure_topic()
            self._topic_ready = True
        headers = letter.kafka_headers()
        # Kafka clients refuse a record with neither key nor value; `binlake.dlq.null` tells
        # the empty value sent instead from an empty original.
        value = b"" if letter.key is None and letter.value is None else letter.value
        try:
            await self._send(self.topic, letter.key, value, headers)
        except Exception as exc:
            if not is_too_large(exc):
                raise
            note = (
                f"key and value ({letter.size} bytes) exceed the dead-letter topic's size "
                f"limit; the lake copy {letter.path or '(none)'} holds them"
            )
            await self._send(self.topic, None, b"", [*headers, (HEADER_OMITTED, note.encode())])
        self.published += 1


class DeadLetterAcks:
    """Acks held back until their record's dead letter is on the dead-letter topic.

    A dead-lettered record's token may be released (by a flush of the rows around it) before its
    dead letter is published: its ack waits here until `published()`. Tokens are known by id
    (Faust events are not hashable by value).
    """

    def __init__(self) -> None:
        # Ack tokens (by id) of dead letters not yet on the dead-letter topic, with their
        # partition; a token released meanwhile is held back in `held`.
        self.unpublished: dict[int, tuple[str, int]] = {}
        self.held: dict[int, Any] = {}

    def expect(self, letters: Iterable[DeadLetter]) -> None:
        """`letters` are about to be published: hold their acks until they are."""
        for letter in letters:
            self.unpublished[id(letter.token)] = (letter.topic, letter.partition)

    def ack(self, tokens: Iterable[Any]) -> None:
        """Ack `tokens` in order, except those of unpublished dead letters (held instead)."""
        for token in tokens:
            if token is None:
                continue
            if id(token) in self.unpublished:
                self.held[id(token)] = token  # acked once its dead letter is published
                continue
            token.ack()

    def published(self, letter: DeadLetter) -> None:
        """`letter` is on its topic: ack its record if its token was released meanwhile."""
        self.unpublished.pop(id(letter.token), None)
        held = self.held.pop(id(letter.token), None)
        if held is not None:
            held.ack()

    def forget(self, letters: Iterable[DeadLetter]) -> None:
        """Never ack these (not published, their partition revoked)."""
        for letter in letters:
            self.unpublished.pop(id(letter.token), None)
            self.held.pop(id(letter.token), None)

    def forget_partitions(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Never ack the unpublished dead letters of revoked partitions: their next owner reads
        and dead-letters those records again."""
        gone = set(partitions)
        for token_id, tp in list(self.unpublished.items()):
            if tp in gone:
                self.unpublished.pop(token_id)
                self.held.pop(token_id, None)

"""One exception hierarchy for binlake.

Callers decide what to do by class, not by message: a ``RetriableError`` may succeed if tried
again (a broker or database not yet up, a storage location briefly unwritable); a ``FinalError``
never will (bad configuration, a record that cannot be decoded) and must be reported or
dead-lettered instead of retried.
"""


class BinlakeError(Exception):
    """Base of every error binlake raises on purpose."""


class RetriableError(BinlakeError):
    """A transient failure: the same call may succeed later."""


class FinalError(BinlakeError):
    """A permanent failure: retrying the same input gives the same error."""


class ConfigurationError(FinalError):
    """Settings or environment that cannot work (missing binary, bad address, bad value)."""


class DecodeError(FinalError):
    """A Kafka record that is not a valid Debezium change event; carries where it came from."""

    def __init__(self, reason: str, *, topic: str = "", partition: int = -1, offset: int = -1):
        where = f" at {topic}[{partition}]@{offset}" if topic else ""
        super().__init__(f"{reason}{where}")
        self.reason = reason
        self.topic = topic
        self.partition = partition
        self.offset = offset


class ConnectError(BinlakeError):
    """Kafka Connect REST API answered with an error."""


class StorageUnavailableError(RetriableError):
    """The lake's storage location cannot be written right now."""


class ReplayError(FinalError):
    """A consumer group reset that cannot be done as asked (bad input, unknown table...)."""


class GroupInUseError(ReplayError):
    """The consumer group has active members: Kafka does not move the offsets of a group in use."""

"""Which table and row made Connect's producer refuse a change record as too large.

Connect's REST trace says only the sizes ("The message is N bytes when serialized which is
larger than M, which is the value of the max.request.size configuration"). The rest is found
from, most exact first:

1. The Connect worker's log: ``AbstractWorkerSourceTask`` logs
   ``[ExactlyOnce]WorkerSourceTask{id=<connector>-<task>} failed to send record to <topic>:``
   just before the task dies: the topic names the table. Only where the log file is readable
   (the local stack writes it to ``<state_dir>/logs/connect.log``).
2. The binlog after the connector's committed source offset (``GET /connectors/<name>/offsets``:
   file and position of the transaction it resumes from): the record that failed is among the
   first events after it, so the captured tables named by its ``Table_map`` events are the
   candidates.
3. The source table itself: rows whose stored size (sum of ``OCTET_LENGTH`` of every column) is
   at least half the limit (an update's record carries the row twice), largest first, give the
   key(s) and the column that makes the row big.

Whatever cannot be found is said in the result's notes; diagnosing never raises.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from binlake.errors import ConnectError
from binlake.settings import Settings
from binlake.source_db import connect_source

from .connect_client import ConnectClient
from .connector_config import RECORD_FRAMING_BYTES
from .connector_health import RecordTooLarge

log = logging.getLogger(__name__)

LOG_TAIL_BYTES = 8 * 1024 * 1024
BINLOG_EVENTS_SCANNED = 2000
ROWS_REPORTED = 5
QUERY_SECONDS = 20  # longest scan of a table for its large rows


@dataclass(frozen=True)
class OversizedRow:
    key: dict[str, Any]
    stored_bytes: int
    largest_column: str
    largest_column_bytes: int


@dataclass
class Diagnosis:
    too_large: RecordTooLarge
    table: str | None = None
    found_by: str = ""
    candidates: list[str] = field(default_factory=list)
    rows: list[OversizedRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self, settings: Settings) -> str:
        """What happened and what the operator changes, for the alert."""
        size = self.too_large.record_bytes
        limit = self.too_large.limit_bytes
        limit_name = self.too_large.limit_name or "the producer's limit"
        lines = [
            "A change record is too large for Kafka Connect's producer"
            + (f": {size:,} bytes > {limit_name} {limit:,} bytes." if size and limit else ".")
        ]
        if self.table:
            lines.append(f"Table: {self.table} (found in {self.found_by}).")
        elif self.candidates:
            lines.append(
                f"Table: not certain; tables written after the committed offset: "
                f"{', '.join(self.candidates)}."
            )
        else:
            lines.append("Table: not found.")
        for row in self.rows:
            lines.append(
                f"Key {_key_text(row.key)}: row stored size {row.stored_bytes:,} bytes, largest "
                f"column {row.largest_column} ({row.largest_column_bytes:,} bytes)."
            )
        lines.extend(self.notes)
        table = self.table or (self.candidates[0] if len(self.candidates) == 1 else "<db.table>")
        column = self.rows[0].largest_column if self.rows else "<column>"
        wanted = _round_up_mib(max(size or 0, settings.kafka.max_record_bytes + 1))
        lines.append(
            "Capture of every table is stopped until this is fixed. Fix, then restart the stack "
            "(or re-register the connector): raise kafka.max_record_bytes (env "
            f"BINLAKE_KAFKA__MAX_RECORD_BYTES, now {settings.kafka.max_record_bytes:,}) to at "
            f"least {wanted:,}; or for that column set connect.column_truncate_to_length_chars "
            f'{{"{table}.{column}": <chars>}} or connect.column_exclude_list '
            f'["{table}.{column}"]. Then run `binlake resync --table {table}`.'
        )
        # Connect sets a topic's max.message.bytes only when it creates the topic: a raised
        # kafka.max_record_bytes does not reach the existing one, and Kafka would refuse the
        # record there next (measured on Kafka 4.3: "larger than the max message size the
        # server will accept"). Registering the connector raises them (cdc.topic_limits).
        topic = f"{settings.kafka.topic_prefix}.{table}"
        lines.append(
            f"The existing topic {topic} keeps the max.message.bytes it was created with: "
            "`binlake up` and `binlake connector register` raise it to the new limit "
            f"({wanted + RECORD_FRAMING_BYTES:,} bytes for {wanted:,}); with another tool, "
            "raise it by hand."
        )
        return "\n".join(lines)


def diagnose_record_too_large(
    settings: Settings,
    too_large: RecordTooLarge,
    *,
    connect: ConnectClient,
    task_id: int | None,
    connect_log: Path | None,
) -> Diagnosis:
    diagnosis = Diagnosis(too_large)
    connector = settings.connect.connector_name
    topic = _topic_from_log(connect_log, connector, task_id, diagnosis.notes)
    if topic is not None:
        table = _table_of_topic(settings, topic)
        if table is not None:
            diagnosis.table, diagnosis.found_by = table, f"the Connect log, topic {topic}"
        else:
            diagnosis.notes.append(f"The Connect log names topic {topic}, not a captured table.")
    if diagnosis.table is None:
        diagnosis.candidates = _tables_after_offset(settings, connect, diagnosis.notes)
        if len(diagnosis.candidates) == 1:
            diagnosis.table = diagnosis.candidates[0]
            diagnosis.found_by = "the binlog after the connector's committed offset"
    limit = too_large.limit_bytes or settings.kafka.max_record_bytes
    for table in [diagnosis.table] if diagnosis.table else diagnosis.candidates:
        try:
            rows = _oversized_rows(settings, table, limit // 2)
        except pymysql.Error as exc:
            diagnosis.notes.append(
                f"Could not read {table} for large rows (within {QUERY_SECONDS} s): {exc}."
            )
            continue
        if rows and diagnosis.table is None:
            diagnosis.table, diagnosis.found_by = table, "its rows over half the limit"
        diagnosis.rows.extend(rows)
        if rows:
            break
    if diagnosis.table and not diagnosis.rows:
        diagnosis.notes.append(
            f"No row of {diagnosis.table} is stored at {limit // 2:,} bytes or more now (deleted "
            "or updated since): key not found."
        )
    return diagnosis


# -- the Connect log ------------------------------------------------------------------------------


def _topic_from_log(
    connect_log: Path | None, connector: str, task_id: int | None, notes: list[str]
) -> str | None:
    if connect_log is None:
        notes.append("The Connect worker's log is not readable from here (no topic from it).")
        return None
    try:
        with connect_log.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - LOG_TAIL_BYTES))
            tail = handle.read().decode("utf-8", "replace")
    except OSError as exc:
        notes.append(f"The Connect log {connect_log} could not be read: {exc.strerror}.")
        return None
    task = re.escape(f"{connector}-{task_id}") if task_id is not None else re.escape(connector)
    # Kafka 3.9's line ends after "to <topic>: "; Kafka 4's log4j2 layout (the local stack's)
    # appends the logger: "... to <topic>:  (org.apache.kafka.connect.runtime.Abstract...)".
    # The task is "WorkerSourceTask{id=...}" or, exactly-once, "ExactlyOnceWorkerSourceTask{...}".
    pattern = re.compile(r"\{id=" + task + r"[^}]*\} failed to send record to ([\w.-]+)")
    matches = pattern.findall(tail)
    if not matches:
        notes.append(f"The Connect log {connect_log} names no topic a record failed to go to.")
        return None
    return matches[-1]


def _table_of_topic(settings: Settings, topic: str) -> str | None:
    prefix = f"{settings.kafka.topic_prefix}."
    if not topic.startswith(prefix):
        return None
    table = topic[len(prefix) :]
    return table if table.count(".") == 1 else None


# -- the binlog after the committed offset --------------------------------------------------------


def _tables_after_offset(settings: Settings, connect: ConnectClient, notes: list[str]) -> list[str]:
    try:
        offsets = connect.get_offsets(settings.connect.connector_name)
    except (ConnectError, ValueError) as exc:
        notes.append(f"The connector's committed offsets could not be read: {exc}.")
        return []
    position = next(
        (
            (str(o.offset["file"]), int(o.offset["pos"]))
            for o in offsets
            if "file" in o.offset and "pos" in o.offset
        ),
        None,
    )
    if position is None:
        notes.append("The connector has no committed binlog position (offsets: none).")
        return []
    file, pos = position
    captured = set(settings.tables)
    tables: list[str] = []
    try:
        with connect_source(settings) as conn, conn.cursor() as cur:
            cur.execute(
                f"SHOW BINLOG EVENTS IN %s FROM {pos:d} LIMIT {BINLOG_EVENTS_SCANNED:d}", (file,)
            )
            for row in cur.fetchall():
                event_type, info = row[2], str(row[5])
                match = re.search(r"\(([^)]+)\)\s*$", info) if event_type == "Table_map" else None
                if match:
                    table = match.group(1).replace("`", "")
                    if table in captured and table not in tables:
                        tables.append(table)
    except pymysql.Error as exc:
        notes.append(f"The binlog after {file}:{pos} could not be read: {exc}.")
        return []
    if not tables:
        notes.append(f"No captured table is written in the binlog after {file}:{pos}.")
    return tables


# -- the rows -------------------------------------------------------------------------------------


def _limit_statement_time(cur: pymysql.cursors.Cursor) -> None:
    """Bound the full scan: a sensor tick must not hang on a huge table (MariaDB, else MySQL)."""
    for statement in (
        f"SET SESSION max_statement_time = {QUERY_SECONDS:d}",
        f"SET SESSION max_execution_time = {QUERY_SECONDS * 1000:d}",
    ):
        try:
            cur.execute(statement)
            return
        except pymysql.Error:
            continue


def _oversized_rows(settings: Settings, table: str, at_least_bytes: int) -> list[OversizedRow]:
    db, name = table.split(".")
    with connect_source(settings) as conn, conn.cursor() as cur:
        _limit_statement_time(cur)
        cur.execute(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (db, name),
        )
        columns = [str(r[0]) for r in cur.fetchall()]
        cur.execute(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
            (db, name),
        )
        key = [str(r[0]) for r in cur.fetchall()]
        if not columns:
            return []
        lengths = [f"COALESCE(OCTET_LENGTH({_quote(c)}), 0)" for c in columns]
        total = " + ".join(lengths)
        cur.execute(
            f"SELECT {', '.join([*map(_quote, key), *lengths]) or '1'} "
            f"FROM {_quote(db)}.{_quote(name)} WHERE {total} >= %s "
            f"ORDER BY {total} DESC LIMIT {ROWS_REPORTED:d}",
            (at_least_bytes,),
        )
        rows = []
        for record in cur.fetchall():
            key_values = dict(zip(key, record[: len(key)], strict=True))
            sizes = [int(v) for v in record[len(key) :]]
            biggest = max(range(len(columns)), key=lambda i: sizes[i])
            rows.append(OversizedRow(key_values, sum(sizes), columns[biggest], sizes[biggest]))
        return rows


def _quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def _key_text(key: dict[str, Any]) -> str:
    if not key:
        return "(table has no primary key)"
    return ", ".join(f"{column}={value!r}" for column, value in key.items())


def _round_up_mib(n: int) -> int:
    mib = 1024 * 1024
    return -(-n // mib) * mib

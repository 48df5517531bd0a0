"""Schema drift: `classify` for every accepted and breaking change, and the bronze writer's file
rotation and schema versions, with real Parquet files in a temp lake."""

from __future__ import annotations

import dataclasses
import logging
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from binlake.bronze.manifest import Manifest
from binlake.bronze.schema_drift import (
    PRIMARY_KEY,
    ChangeKind,
    classify,
    common_type,
    fingerprint,
    fits_within,
    is_dropped,
    mark_dropped,
    row_schema_of,
)
from binlake.bronze.schema_versions import UNTRACKED
from binlake.errors import StorageUnavailableError
from binlake.storage import LakeStorage
from streams import partition_writer as pw
from streams.bronze_worker import BronzeWorker, KafkaRecord
from streams.flush_policy import FlushPolicy
from streams.partition_writer import RotationReason
from tests.support.partition_writer import (
    KEY_SCHEMA,
    ROW_SCHEMA,
    T10,
    TABLE,
    change,
    make_writer,
    read_back,
    tombstone,
)


def schema(*columns: tuple[str, pa.DataType] | pa.Field) -> pa.Schema:
    return pa.schema([c if isinstance(c, pa.Field) else pa.field(*c) for c in columns])


BASE = schema(("id", pa.int64()), ("qty", pa.int32()), ("price", pa.decimal128(10, 2)))


# -- classify: same ----------------------------------------------------------------------------


def test_identical_schemas_are_the_same():
    result = classify(BASE, schema(*BASE), ["id"], ["id"])
    assert result.kind is ChangeKind.SAME
    assert result.schema is BASE and result.changes == () and result.breaking == ()
    assert result.column is None and result.describe() == "no change"


def test_varchar_length_and_not_null_changes_are_the_same():
    # VARCHAR(20) -> VARCHAR(50) is string both times; NOT NULL is not stored in bronze.
    before = schema(("id", pa.int64()), pa.field("name", pa.string(), nullable=True))
    after = schema(("id", pa.int64()), pa.field("name", pa.string(), nullable=False))
    result = classify(before, after, ["id"], ["id"])
    assert result.kind is ChangeKind.SAME and result.schema is before


# -- classify: accepted ------------------------------------------------------------------------


def test_a_new_nullable_column_is_accepted_and_the_new_schema_is_kept_as_is():
    new = BASE.append(pa.field("note", pa.string()))
    result = classify(BASE, new, ["id"], ["id"])
    assert result.kind is ChangeKind.ACCEPTED
    assert result.schema is new  # nothing dropped: the incoming schema object itself
    assert [(c.column, c.change, c.new_type) for c in result.changes] == [
        ("note", "added", "string")
    ]
    assert str(result.changes[0]) == "column 'note' added (string)"


def test_a_new_not_null_column_is_accepted_and_flagged():
    new = BASE.append(pa.field("flag", pa.int8(), nullable=False))
    result = classify(BASE, new, ["id"], ["id"])
    assert result.kind is ChangeKind.ACCEPTED
    assert [c.change for c in result.changes] == ["added_not_null"]
    assert "NOT NULL" in str(result.changes[0])


INTS = [pa.int8(), pa.int16(), pa.int32(), pa.int64()]


@pytest.mark.parametrize(
    ("old", "new"),
    [(INTS[i], INTS[j]) for i in range(4) for j in range(i + 1, 4)]
    + [(pa.uint8(), pa.int16()), (pa.uint32(), pa.int64()), (pa.uint16(), pa.uint32())],
    ids=str,
)
def test_integer_widening_is_accepted(old, new):
    result = classify(
        schema(("id", pa.int64()), ("n", old)), schema(("id", pa.int64()), ("n", new))
    )
    assert result.kind is ChangeKind.ACCEPTED
    assert result.schema.field("n").type == new
    [widened] = result.changes
    assert (widened.column, widened.change, widened.old_type, widened.new_type) == (
        "n",
        "widened",
        str(old),
        str(new),
    )


@pytest.mark.parametrize(
    "new",
    [
        pa.decimal128(
            12, 4
        ),  # DECIMAL(10,2) -> DECIMAL(12,4): 8 integer digits kept, 2 more decimals
        pa.decimal128(12, 2),  # more integer digits
        pa.decimal128(11, 3),
        pa.decimal128(38, 2),
        pa.decimal256(40, 2),  # past 38 digits: decimal256
        pa.decimal256(10, 2),
    ],
    ids=str,
)
def test_decimal_widening_is_accepted(new):
    result = classify(BASE, schema(("id", pa.int64()), ("qty", pa.int32()), ("price", new)))
    assert result.kind is ChangeKind.ACCEPTED
    assert result.schema.field("price").type == new
    assert str(result.changes[0]) == f"column 'price' widened from decimal128(10, 2) to {new}"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (pa.float32(), pa.float64()),
        (pa.timestamp("ms"), pa.timestamp("us")),  # DATETIME(3) -> DATETIME(6)
        (pa.duration("ms"), pa.duration("us")),
        (pa.string(), pa.large_string()),
        (pa.binary(), pa.large_binary()),
    ],
    ids=str,
)
def test_other_lossless_widenings_are_accepted(old, new):
    result = classify(schema(("c", old)), schema(("c", new)))
    assert result.kind is ChangeKind.ACCEPTED and result.schema.field("c").type == new


def test_a_dropped_column_is_kept_as_a_marked_nullable_column_at_the_end():
    new = schema(("id", pa.int64()), ("price", pa.decimal128(10, 2)))
    result = classify(BASE, new, ["id"], ["id"])
    assert result.kind is ChangeKind.ACCEPTED
    assert result.schema.names == ["id", "price", "qty"]
    qty = result.schema.field("qty")
    assert qty.type == pa.int32() and qty.nullable and is_dropped(qty)
    assert [(c.column, c.change) for c in result.changes] == [("qty", "dropped")]
    assert str(result.changes[0]) == "column 'qty' (int32) dropped, kept as nulls"
    # The next record without the column changes nothing more.
    again = classify(result.schema, new, ["id"], ["id"])
    assert again.kind is ChangeKind.SAME and again.schema is result.schema


def test_a_dropped_column_added_again_is_breaking_as_the_source_reset_its_values():
    # MySQL gives every row the re-added column's default; the lake holds the old values.
    dropped = schema(("id", pa.int64()), mark_dropped(pa.field("qty", pa.int32())))
    result = classify(dropped, schema(("id", pa.int64()), ("qty", pa.int64())))
    assert result.kind is ChangeKind.BREAKING
    assert [c.change for c in result.changes] == ["readded"]
    [broken] = result.breaking
    assert (broken.column, broken.old_type, broken.new_type) == ("qty", "int32", "int64")
    assert "added again" in broken.reason
    assert not is_dropped(result.schema.field("qty"))


def test_reordered_columns_are_accepted():
    new = schema(("qty", pa.int32()), ("id", pa.int64()), ("price", pa.decimal128(10, 2)))
    result = classify(BASE, new, ["id"], ["id"])
    assert result.kind is ChangeKind.ACCEPTED and result.schema.names == ["qty", "id", "price"]
    assert str(result.changes[0]) == "columns reordered"


def test_several_accepted_changes_at_once():
    # (A drop together with an add is a suspected rename: see the tests of breaking changes.)
    new = schema(("id", pa.int64()), ("qty", pa.int64()), ("note", pa.string()))
    result = classify(BASE.append(pa.field("note", pa.string())), new, ["id"], ["id"])
    assert result.kind is ChangeKind.ACCEPTED
    assert {(c.column, c.change) for c in result.changes} == {
        ("qty", "widened"),
        ("price", "dropped"),
    }
    assert result.schema.names == ["id", "qty", "note", "price"]
    both = classify(
        BASE,
        schema(
            ("id", pa.int64()),
            ("qty", pa.int64()),
            ("price", pa.decimal128(10, 2)),
            ("note", pa.string()),
        ),
        ["id"],
        ["id"],
    )
    assert both.kind is ChangeKind.ACCEPTED
    assert {(c.column, c.change) for c in both.changes} == {("qty", "widened"), ("note", "added")}


def test_a_cumulative_schema_compared_with_the_next_one_is_accepted():
    # The bronze check compares files of consecutive versions: both carry dropped columns.
    v1 = schema(("id", pa.int64()), mark_dropped(pa.field("old", pa.string())))
    v2 = schema(("id", pa.int64()), ("new", pa.int32()), mark_dropped(pa.field("old", pa.string())))
    result = classify(v1, v2, ["id"], ["id"])
    assert result.kind is ChangeKind.ACCEPTED
    assert [(c.column, c.change) for c in result.changes] == [("new", "added")]


# -- classify: breaking ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (pa.int32(), pa.string(), "type family changed (integer -> string)"),  # INT -> VARCHAR
        (pa.string(), pa.int64(), "type family changed (string -> integer)"),
        (pa.int32(), pa.decimal128(12, 2), "type family changed (integer -> decimal)"),
        (pa.date32(), pa.timestamp("us"), "type family changed (date -> timestamp)"),
        (pa.int64(), pa.int32(), "narrowed from 64 to 32 bits"),  # BIGINT -> INT
        (pa.int16(), pa.int8(), "narrowed from 16 to 8 bits"),
        (pa.int32(), pa.uint64(), "signed to unsigned: negative values would not fit"),
        (
            pa.uint32(),
            pa.int32(),
            "unsigned to signed of the same width: large values would not fit",
        ),
        (pa.float64(), pa.float32(), "narrowed from 64 to 32 bits"),
        (pa.decimal128(12, 4), pa.decimal128(10, 2), "narrowed: fewer decimal places (4 -> 2)"),
        (pa.decimal128(12, 4), pa.decimal128(10, 4), "narrowed: fewer integer digits (8 -> 6)"),
        (pa.decimal128(10, 2), pa.decimal128(10, 4), "narrowed: fewer integer digits (8 -> 6)"),
        (pa.decimal256(40, 2), pa.decimal128(38, 2), "narrowed: fewer integer digits (38 -> 36)"),
        (pa.timestamp("us"), pa.timestamp("ms"), "narrowed to a coarser unit (us -> ms)"),
        (pa.timestamp("us"), pa.timestamp("us", tz="UTC"), "time zone changed (None -> UTC)"),
        (pa.large_string(), pa.string(), "narrowed to 32-bit offsets"),
        (pa.bool_(), pa.int8(), "type family changed (boolean -> integer)"),
    ],
    ids=lambda v: str(v) if isinstance(v, pa.DataType) else "",
)
def test_breaking_changes_name_the_column_and_both_types(old, new, reason):
    before = schema(("id", pa.int64()), ("c", old))
    after = schema(("id", pa.int64()), ("c", new))
    result = classify(before, after, ["id"], ["id"])
    assert result.kind is ChangeKind.BREAKING
    assert result.schema is after  # the true new schema: nothing is cast
    assert (result.column, result.old_type, result.new_type, result.reason) == (
        "c",
        str(old),
        str(new),
        reason,
    )
    assert str(result.breaking[0]) == f"column 'c' changed from {old} to {new}: {reason}"


def test_a_primary_key_change_is_breaking():
    result = classify(BASE, BASE, ["id"], ["id", "qty"])
    assert result.kind is ChangeKind.BREAKING
    assert (result.column, result.old_type, result.new_type) == (PRIMARY_KEY, "(id)", "(id, qty)")
    assert result.primary_key == ("id", "qty")
    assert result.describe() == "primary key changed from (id) to (id, qty)"


def test_a_dropped_column_added_again_as_another_family_is_breaking():
    dropped = schema(("id", pa.int64()), mark_dropped(pa.field("code", pa.int32())))
    result = classify(dropped, schema(("id", pa.int64()), ("code", pa.string())))
    assert result.kind is ChangeKind.BREAKING and result.column == "code"


def test_breaking_and_accepted_changes_are_both_reported():
    new = schema(
        ("id", pa.int64()),
        ("qty", pa.string()),
        ("price", pa.decimal128(10, 2)),
        ("note", pa.string()),
    )
    result = classify(BASE, new, ["id"], ["id"])
    assert result.kind is ChangeKind.BREAKING
    assert [b.column for b in result.breaking] == ["qty"]
    assert [c.column for c in result.changes] == ["note"]
    assert result.describe().startswith("column 'qty' changed from int32 to string")


# -- fingerprint, fits_within, common_type, row_schema_of -------------------------------------


def test_fingerprint_is_stable_and_follows_names_types_order_and_drops():
    fp = fingerprint(BASE)
    assert len(fp) == 16 and fp == fingerprint(schema(*BASE))
    assert fingerprint(pa.schema([f.with_nullable(False) for f in BASE])) == fp
    assert fingerprint(BASE.with_metadata({b"k": b"v"})) == fp
    others = [
        schema(("id", pa.int64()), ("qty", pa.int64()), ("price", pa.decimal128(10, 2))),
        schema(("id", pa.int64()), ("qty2", pa.int32()), ("price", pa.decimal128(10, 2))),
        schema(("qty", pa.int32()), ("id", pa.int64()), ("price", pa.decimal128(10, 2))),
        schema(
            ("id", pa.int64()),
            mark_dropped(pa.field("qty", pa.int32())),
            ("price", pa.decimal128(10, 2)),
        ),
    ]
    assert len({fp, *map(fingerprint, others)}) == 5


def test_fits_within():
    assert fits_within(KEY_SCHEMA, ROW_SCHEMA)
    assert fits_within(schema(("id", pa.int32())), ROW_SCHEMA)  # widened key
    assert not fits_within(schema(("id", pa.string())), ROW_SCHEMA)
    assert not fits_within(schema(("other", pa.int64())), ROW_SCHEMA)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (pa.int32(), pa.int64(), pa.int64()),
        (pa.int64(), pa.int32(), pa.int64()),
        (pa.uint32(), pa.int32(), pa.int64()),
        (pa.decimal128(10, 2), pa.decimal128(12, 4), pa.decimal128(12, 4)),
        (pa.decimal128(12, 4), pa.decimal128(10, 2), pa.decimal128(12, 4)),
        (pa.decimal128(11, 1), pa.decimal128(10, 4), pa.decimal128(14, 4)),
        (pa.decimal128(36, 2), pa.decimal128(20, 10), pa.decimal256(44, 10)),
        (pa.decimal128(10, 2), pa.decimal256(40, 2), pa.decimal256(40, 2)),
        (pa.timestamp("ms"), pa.timestamp("us"), pa.timestamp("us")),
        (pa.int32(), pa.string(), None),
        (pa.timestamp("us"), pa.timestamp("us", tz="UTC"), None),
    ],
    ids=str,
)
def test_common_type(a, b, expected):
    result = common_type(a, b)
    assert result == expected if expected is not None else result is None


def test_row_schema_of_a_bronze_file_drops_provenance(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change())
    [entry] = writer.close(RotationReason.SHUTDOWN).files
    file_schema = pq.read_schema(storage.full_path(entry.path))
    assert row_schema_of(file_schema).names == ["id", "name", "qty"]


# -- the writer: versions and rotation ----------------------------------------------------------

NOTE = ROW_SCHEMA.append(pa.field("note", pa.string()))  # ALTER TABLE ADD note VARCHAR NULL
QTY_BIGINT = pa.schema(
    [ROW_SCHEMA.field("id"), ROW_SCHEMA.field("name"), pa.field("qty", pa.int64())]
)
QTY_STRING = pa.schema(
    [ROW_SCHEMA.field("id"), ROW_SCHEMA.field("name"), pa.field("qty", pa.string())]
)
NO_NAME = pa.schema([ROW_SCHEMA.field("id"), ROW_SCHEMA.field("qty")])  # DROP COLUMN name


def versions(of: Manifest) -> list[tuple[int, int, int, str]]:
    return [
        (e.first_offset, e.last_offset, e.schema_version, e.rotation_reason) for e in of.entries()
    ]


def test_the_first_file_is_schema_version_1_with_its_fingerprint(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change())
    assert writer.schema_version == 1
    [entry] = writer.close(RotationReason.SHUTDOWN).files
    assert entry.schema_version == 1
    assert entry.schema_fingerprint == fingerprint(ROW_SCHEMA)
    assert entry.schema_fingerprint == fingerprint(row_schema_of(read_back(storage, entry).schema))


def test_an_added_column_rotates_and_starts_the_next_version(storage, manifest, clock, caplog):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change())
    with caplog.at_level(logging.INFO, logger="binlake.bronze.schema_versions"):
        released = writer.add(1, change(id_=2, schema=NOTE, note="hello"))
    assert [(e.last_offset, e.rotation_reason, e.schema_version) for e in released.files] == [
        (0, "schema_change", 1)
    ]
    assert writer.schema_version == 2 and writer.row_schema is NOTE
    writer.add(2, change(id_=3, schema=NOTE))  # same shape: same file
    [second] = writer.close(RotationReason.SHUTDOWN).files
    assert (second.first_offset, second.last_offset, second.schema_version) == (1, 2, 2)
    assert second.schema_fingerprint == fingerprint(NOTE) != released.files[0].schema_fingerprint
    assert read_back(storage, second).column("note").to_pylist() == ["hello", None]
    assert "shop.orders schema version 1 -> 2, accepted" in caplog.text
    assert "column 'note' added (string)" in caplog.text


def test_integer_widening_writes_the_wider_type_from_then_on(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change(qty=7))
    writer.add(1, change(id_=2, schema=QTY_BIGINT, qty=5_000_000_000))
    writer.close(RotationReason.SHUTDOWN)
    first, second = manifest.entries()
    assert read_back(storage, first).schema.field("qty").type == pa.int32()
    assert read_back(storage, second).schema.field("qty").type == pa.int64()
    assert read_back(storage, second).column("qty").to_pylist() == [5_000_000_000]
    assert [e.schema_version for e in (first, second)] == [1, 2]


def test_decimal_widening_and_rows_of_the_old_shape_after_it(storage, manifest, clock):
    # DECIMAL(10,2) -> DECIMAL(12,4)
    v1 = pa.schema([pa.field("id", pa.int64()), pa.field("price", pa.decimal128(10, 2))])
    v2 = pa.schema([pa.field("id", pa.int64()), pa.field("price", pa.decimal128(12, 4))])
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change(schema=v1, price=Decimal("1.50")))
    writer.add(1, change(id_=2, schema=v2, price=Decimal("12345678.1234")))
    writer.close(RotationReason.SHUTDOWN)
    first, second = manifest.entries()
    assert read_back(storage, second).schema.field("price").type == pa.decimal128(12, 4)
    assert read_back(storage, second).column("price").to_pylist() == [Decimal("12345678.1234")]
    assert (first.schema_version, second.schema_version) == (1, 2)


def test_an_equal_but_distinct_schema_object_keeps_the_file(storage, manifest, clock):
    # e.g. VARCHAR(20) -> VARCHAR(50): Debezium's schema text changes, the Arrow schema does not.
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change())
    not_null_name = pa.schema([f.with_nullable(f.name != "name") for f in ROW_SCHEMA])
    assert writer.add(1, change(id_=2, schema=not_null_name)) == pw.Released()
    assert writer.add(2, change(id_=3, schema=pa.schema(list(ROW_SCHEMA)))) == pw.Released()
    [entry] = writer.close(RotationReason.SHUTDOWN).files
    assert (entry.rows, entry.schema_version) == (3, 1)


def test_a_dropped_column_is_kept_as_nulls_and_rotates_once(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change())
    released = writer.add(1, change(id_=2, schema=NO_NAME))
    assert released.files[0].rotation_reason == "schema_change"
    assert writer.add(2, change(id_=3, schema=NO_NAME)) == pw.Released()
    [second] = writer.close(RotationReason.SHUTDOWN).files
    table = read_back(storage, second)
    assert table.column_names[-3:] == ["id", "qty", "name"]
    assert table.column("name").to_pylist() == [None, None]
    assert is_dropped(row_schema_of(table.schema).field("name"))
    assert second.schema_version == 2 and second.rows == 2


def test_a_breaking_change_is_written_as_it_is_under_a_new_version(
    storage, manifest, clock, caplog
):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change(qty=7))
    with caplog.at_level(logging.ERROR, logger="binlake.bronze.schema_versions"):
        released = writer.add(1, change(id_=2, schema=QTY_STRING, qty="seven"))
    assert released.files[0].rotation_reason == "schema_change"
    [second] = writer.close(RotationReason.SHUTDOWN).files
    table = read_back(storage, second)
    assert table.schema.field("qty").type == pa.string()  # its true type, not cast to int32
    assert table.column("qty").to_pylist() == ["seven"]
    assert read_back(storage, released.files[0]).column("qty").to_pylist() == [7]
    assert second.schema_version == 2
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    for part in ("BREAKING", "shop.orders", "column 'qty'", "int32", "string", "version 1 -> 2"):
        assert part in message, message


def test_narrowing_after_widening_is_breaking(storage, manifest, clock, caplog):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change(schema=QTY_BIGINT))
    with caplog.at_level(logging.ERROR, logger="binlake.bronze.schema_versions"):
        writer.add(1, change(id_=2, schema=ROW_SCHEMA))
    writer.close(RotationReason.SHUTDOWN)
    assert [e.schema_version for e in manifest.entries()] == [1, 2]
    assert "narrowed from 64 to 32 bits" in caplog.text
    assert read_back(storage, manifest.entries()[1]).schema.field("qty").type == pa.int32()


def test_a_primary_key_change_starts_a_new_version(storage, manifest, clock, caplog):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change())
    rekeyed = dataclasses.replace(change(id_=2), primary_key=("id", "name"))
    with caplog.at_level(logging.ERROR, logger="binlake.bronze.schema_versions"):
        released = writer.add(1, rekeyed)
    assert released.files[0].rotation_reason == "schema_change"
    [second] = writer.close(RotationReason.SHUTDOWN).files
    assert (second.schema_version, second.primary_key) == (2, ["id", "name"])
    assert "primary key changed from (id) to (id, name)" in caplog.text


def test_a_tombstone_joins_the_file_of_the_widened_schema(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change(schema=QTY_BIGINT))
    writer.add(1, change("d", 1, schema=QTY_BIGINT))
    assert writer.add(2, tombstone(1), timestamp_ms=T10) == pw.Released()
    [entry] = writer.close(RotationReason.SHUTDOWN).files
    assert entry.rows == 3 and entry.schema_version == 1
    assert read_back(storage, entry).column("_op").to_pylist() == ["c", "d", "x"]


def test_tombstones_of_an_unknown_table_are_untracked_until_a_row_arrives(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, tombstone(1), timestamp_ms=T10)
    assert writer.schema_version == UNTRACKED
    [alone] = writer.flush(RotationReason.AGE).files
    assert alone.schema_version == UNTRACKED
    assert alone.schema_fingerprint == fingerprint(KEY_SCHEMA)
    writer.add(1, tombstone(2), timestamp_ms=T10)
    writer.add(2, change("c", 3))  # the key-only file widens to the full row: version 1
    [widened] = writer.close(RotationReason.SHUTDOWN).files
    assert (widened.rows, widened.schema_version) == (2, 1)


def test_the_previous_versions_file_is_written_before_the_new_version_begins(
    storage, manifest, clock
):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change(), token="a")
    storage.failing = True
    with pytest.raises(StorageUnavailableError):
        writer.add(1, change(id_=2, schema=NOTE), token="b")
    assert writer.schema_version == 1 and writer.table_schema(TABLE).version == 1
    storage.failing = False
    released = writer.add(1, change(id_=2, schema=NOTE), token="b")
    assert released.tokens == ["a"]
    writer.close(RotationReason.SHUTDOWN)
    assert versions(manifest) == [(0, 0, 1, "schema_change"), (1, 1, 2, "shutdown")]


def test_each_table_on_a_partition_has_its_own_versions(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change())
    writer.add(1, change(table="shop.customers", schema=NOTE))
    writer.add(2, change(schema=NOTE))
    writer.close(RotationReason.SHUTDOWN)
    assert [(e.table, e.schema_version) for e in manifest.entries()] == [
        ("shop.orders", 1),
        ("shop.customers", 1),
        ("shop.orders", 2),
    ]


def test_a_known_schema_object_is_classified_once(storage, manifest, clock, monkeypatch):
    calls = []

    def counting(*args, **kwargs):
        calls.append(args)
        return classify(*args, **kwargs)

    monkeypatch.setattr("binlake.bronze.schema_versions.classify", counting)
    writer = make_writer(storage, manifest, clock, flush_rows=3)
    for offset in range(10):
        writer.add(offset, change(id_=offset, schema=NOTE))
    assert calls == []  # the first row of a table without history needs no comparison
    writer.add(10, change(id_=10, schema=QTY_BIGINT))  # qty widened, note dropped
    assert len(calls) == 1
    for offset in range(11, 20):
        writer.add(offset, change(id_=offset, schema=QTY_BIGINT))
    # Once more to find QTY_BIGINT the same shape as the merged schema (which keeps `note`),
    # then never again.
    assert len(calls) == 2


# -- the writer: resuming versions from the manifest ----------------------------------------------


def test_a_new_writer_resumes_version_and_cumulative_schema(storage, manifest, clock):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change())
    writer.add(1, change(id_=2, schema=NO_NAME))  # v2: name dropped, kept as nulls
    writer.close(RotationReason.SHUTDOWN)

    again = make_writer(storage, manifest, clock, resume_after=1)
    assert again.add(2, change(id_=3, schema=NO_NAME)) == pw.Released()
    tracked = again.table_schema(TABLE)
    assert tracked is not None and tracked.version == 2
    assert is_dropped(tracked.schema.field("name"))  # the dropped column survived the restart
    again.add(3, change(id_=4, schema=QTY_BIGINT.append(pa.field("note", pa.string()))))
    again.close(RotationReason.SHUTDOWN)
    assert [e.schema_version for e in manifest.entries()] == [1, 2, 2, 3]


def test_after_a_restart_a_dropped_column_added_again_as_another_type_is_breaking(
    storage, manifest, clock, caplog
):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change())
    writer.add(1, change(id_=2, schema=NO_NAME))
    writer.close(RotationReason.SHUTDOWN)
    again = make_writer(storage, manifest, clock, resume_after=1)
    readded = NO_NAME.append(pa.field("name", pa.int64()))
    with caplog.at_level(logging.ERROR, logger="binlake.bronze.schema_versions"):
        again.add(2, change(id_=3, schema=readded, name=5))
    assert "column 'name' changed from string to int64" in caplog.text
    assert again.schema_version == 3


def test_files_from_before_versions_were_tracked_start_version_1(storage, clock, caplog):
    old_manifest = Manifest(storage, path="bronze/_manifest/old.jsonl")
    writer = make_writer(storage, old_manifest, clock)
    writer.add(0, change())
    [entry] = writer.close(RotationReason.SHUTDOWN).files
    current = Manifest(storage)
    current.append(dataclasses.replace(entry, schema_version=0, schema_fingerprint=""))

    with caplog.at_level(logging.INFO, logger="binlake.bronze.schema_versions"):
        again = make_writer(storage, current, clock, resume_after=0)
        again.add(1, change(id_=2))
    assert again.schema_version == 1
    assert "schema version 1" in caplog.text and "BREAKING" not in caplog.text


def test_a_missing_last_file_restarts_the_history_at_the_next_version(
    storage, manifest, clock, caplog
):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change())
    [entry] = writer.close(RotationReason.SHUTDOWN).files
    storage.filesystem.delete_file(storage.full_path(entry.path))
    with caplog.at_level(logging.ERROR, logger="binlake.bronze.schema_versions"):
        again = make_writer(storage, manifest, clock, resume_after=0)
        again.add(1, change(id_=2))
    assert again.schema_version == 2
    assert "missing" in caplog.text


def test_an_unreadable_last_file_is_retried_with_nothing_changed(
    storage, manifest, clock, monkeypatch
):
    writer = make_writer(storage, manifest, clock)
    writer.add(0, change())
    writer.close(RotationReason.SHUTDOWN)

    def unreadable(*args, **kwargs):
        raise OSError("volume away")

    again = make_writer(storage, manifest, clock, resume_after=0)
    monkeypatch.setattr("binlake.bronze.schema_versions.pq.read_schema", unreadable)
    with pytest.raises(StorageUnavailableError):
        again.add(1, change(id_=2), token="x")
    assert again.buffered_rows == 0 and again.table_schema(TABLE) is None
    monkeypatch.undo()
    again.add(1, change(id_=2), token="x")
    assert again.schema_version == 1


# -- through the worker, with Debezium-shaped records ---------------------------------------------


def test_worker_rotates_at_each_ddl_of_decoded_debezium_records(tmp_path, dbz, caplog):
    lake = LakeStorage.from_url(str(tmp_path / "lake"))
    worker = BronzeWorker(
        lake,
        topic_prefix=dbz.PREFIX,
        flush_policy=FlushPolicy(rows=1000, seconds=60.0),
        clock=lambda: 0.0,
        wall_clock=lambda: 1.0,
    )
    table = dbz.table(table="widgets")
    records = []

    def emit(t, id_, **values):
        key, value = t.change("c", id_, pos=100 + len(records), **values)
        records.append(KafkaRecord(t.topic, 0, len(records), key, value, token=len(records)))

    emit(table, 1, qty=3)
    emit(table, 2, qty=4)
    noted = table.with_column(dbz.column("note", "string", True))  # ADD COLUMN note NULL
    emit(noted, 3, note="n")
    wide = dataclasses.replace(
        noted,
        columns=[  # MODIFY qty BIGINT
            dbz.column("qty", "int64", True) if c["field"] == "qty" else c for c in noted.columns
        ],
    )
    emit(wide, 4, qty=5_000_000_000)
    broken = dataclasses.replace(
        wide,
        columns=[  # MODIFY name INT: breaking
            dbz.column("name", "int32", True) if c["field"] == "name" else c for c in wide.columns
        ],
    )
    emit(broken, 5, name=42)
    emit(broken, 6, name=43)
    with caplog.at_level(logging.INFO, logger="binlake.bronze.schema_versions"):
        for record in records:
            worker.handle(record)
        worker.close()

    entries = Manifest(lake).entries()
    assert [
        (e.first_offset, e.last_offset, e.schema_version, e.rotation_reason) for e in entries
    ] == [
        (0, 1, 1, "schema_change"),
        (2, 2, 2, "schema_change"),
        (3, 3, 3, "schema_change"),
        (4, 5, 4, "shutdown"),
    ]
    schemas = [row_schema_of(pq.read_schema(lake.full_path(e.path))) for e in entries]
    assert [s.field("qty").type for s in schemas] == [
        pa.int32(),
        pa.int32(),
        pa.int64(),
        pa.int64(),
    ]
    assert [s.field("name").type for s in schemas] == [pa.string()] * 3 + [pa.int32()]
    assert "column 'name' changed from string to int32" in caplog.text
    assert len({e.schema_fingerprint for e in entries}) == 4


# -- column defaults and changes the change stream cannot apply (issue 11) --------------------


def _with_default(name: str, data_type: pa.DataType, value, *, nullable: bool = True) -> pa.Field:
    from cdc.column_defaults import DEFAULT_KEY, encode_default

    return pa.field(
        name, data_type, nullable=nullable, metadata={DEFAULT_KEY: encode_default(value, data_type)}
    )


def test_an_added_column_keeps_its_default_and_a_later_default_change_is_the_same_shape():
    from cdc.column_defaults import column_default

    base = schema(("id", pa.int64()), ("a", pa.string()))
    added = pa.schema([*base, _with_default("c", pa.int32(), 7, nullable=False)])
    result = classify(base, added, ["id"], ["id"])
    assert result.kind is ChangeKind.ACCEPTED
    assert column_default(result.schema.field("c")).as_py() == 7
    # ALTER COLUMN c SET DEFAULT 9 changes no existing row: no new version, the default the
    # column was added with stays.
    redefaulted = pa.schema([*base, _with_default("c", pa.int32(), 9, nullable=False)])
    again = classify(result.schema, redefaulted, ["id"], ["id"])
    assert again.kind is ChangeKind.SAME and again.schema is result.schema
    assert fingerprint(added) == fingerprint(redefaulted)
    # A later accepted change (another column) carries the first default on, not the new one.
    more = pa.schema([*redefaulted, pa.field("n", pa.string())])
    later = classify(result.schema, more, ["id"], ["id"])
    assert later.kind is ChangeKind.ACCEPTED
    assert column_default(later.schema.field("c")).as_py() == 7
    assert column_default(later.schema.field("n")) is None


def test_columns_dropped_and_added_in_one_step_are_a_suspected_rename():
    base = schema(("id", pa.int64()), ("b", pa.string()), ("qty", pa.int32()))
    renamed = schema(("id", pa.int64()), ("b2", pa.string()), ("qty", pa.int32()))
    result = classify(base, renamed, ["id"], ["id"])
    assert result.kind is ChangeKind.BREAKING
    [broken] = result.breaking
    assert broken.columns == ("b", "b2")
    assert (broken.old_type, broken.new_type) == ("(b string)", "(b2 string)")
    assert "suspected rename" in str(broken)
    # A drop alone and an add alone stay accepted.
    assert classify(base, schema(("id", pa.int64()), ("qty", pa.int32())), ["id"], ["id"]).kind is (
        ChangeKind.ACCEPTED
    )


def test_schema_needs_resync_names_table_columns_and_types():
    from binlake.bronze.schema_drift import SchemaNeedsResync

    base = schema(("id", pa.int64()), ("b", pa.string()))
    renamed = schema(("id", pa.int64()), ("b2", pa.string()))
    error = SchemaNeedsResync(
        "shop.t", classify(base, renamed, ["id"], ["id"]).breaking, schema_version=3, first_offset=9
    )
    assert error.columns == ("b", "b2")
    assert error.old_types == ("(b string)",) and error.new_types == ("(b2 string)",)
    message = str(error)
    assert "shop.t" in message and "'b'" not in message  # columns named in the type text
    assert "(b string) -> (b2 string)" in message and "binlake resync --table shop.t" in message

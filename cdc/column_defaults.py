"""Column defaults carried from Debezium's Connect schema into Arrow field metadata.

Debezium puts each column's default into its Connect schema (`"default"` of the field with
JsonConverter, the field's `default` / `connect.default` with AvroConverter). MySQL gives every
row that exists when a column is added that default, without a binlog event per row, so the
lake needs it to fill rows merged before the column existed.

The default is stored on the Arrow field as metadata `binlake.default`: a JSON text of the value in
the column's Arrow type, so it survives in every Parquet footer. Temporal values are stored as their
integer in the type's unit, decimals as exact text and bytes as base64, which keeps every value
exact. A column without a default (or with a NULL default) has no such key: its fill is null. Schema
fingerprints leave the key out (`binlake.bronze.schema_drift.fingerprint`): a default is not part of
the shape of the rows.
"""

from __future__ import annotations

import binascii
import json
from decimal import Decimal
from typing import Any

import pyarrow as pa

__all__ = [
    "CONNECT_DEFAULT_UNKNOWN",
    "DEFAULT_KEY",
    "DEFAULT_UNKNOWN_KEY",
    "column_default",
    "encode_default",
    "has_unknown_default",
    "with_default",
]

DEFAULT_KEY = b"binlake.default"
# A NOT NULL column without a default in Debezium's schema whose MySQL implicit default (what
# `ADD COLUMN c ... NOT NULL` gives existing rows) the lake cannot tell from the Connect type.
DEFAULT_UNKNOWN_KEY = b"binlake.default_unknown"
# Set on a Connect field schema (by the Avro path) whose default exists but cannot be read.
CONNECT_DEFAULT_UNKNOWN = "binlake.default_unknown"


def _integer_storage(data_type: pa.DataType) -> pa.DataType | None:
    """The integer type a temporal type's values are counted in, None for other types."""
    if pa.types.is_date32(data_type) or pa.types.is_time32(data_type):
        return pa.int32()
    if (
        pa.types.is_date64(data_type)
        or pa.types.is_time64(data_type)
        or pa.types.is_timestamp(data_type)
        or pa.types.is_duration(data_type)
    ):
        return pa.int64()
    return None


def encode_default(value: Any, data_type: pa.DataType) -> bytes:
    """`value` (a Python value `pa.array` accepts for `data_type`) as metadata text.

    Raises pa.ArrowInvalid / TypeError / OverflowError if the value does not fit the type.
    """
    array = pa.array([value], data_type)
    storage = _integer_storage(data_type)
    if storage is not None:
        plain: Any = array.cast(storage)[0].as_py()
    elif pa.types.is_decimal(data_type):
        plain = format(array[0].as_py(), "f")
    elif pa.types.is_binary(data_type) or pa.types.is_large_binary(data_type):
        plain = binascii.b2a_base64(array[0].as_py(), newline=False).decode("ascii")
    else:
        plain = array[0].as_py()
    return json.dumps(plain, separators=(",", ":"), ensure_ascii=False).encode()


def _decode(text: bytes, data_type: pa.DataType) -> pa.Scalar:
    plain = json.loads(text)
    storage = _integer_storage(data_type)
    if storage is not None:
        return pa.array([plain], storage).cast(data_type)[0]
    if pa.types.is_decimal(data_type):
        return pa.scalar(Decimal(plain), data_type)
    if pa.types.is_binary(data_type) or pa.types.is_large_binary(data_type):
        return pa.scalar(binascii.a2b_base64(plain, strict_mode=True), data_type)
    if (pa.types.is_string(data_type) or pa.types.is_large_string(data_type)) and not isinstance(
        plain, str
    ):
        # Written before a column became a string (another type family): the text of the value.
        plain = json.dumps(plain)
    return pa.array([plain]).cast(data_type)[0]


def column_default(field: pa.Field) -> pa.Scalar | None:
    """The default recorded on `field`, as a scalar of the field's type; None when it has none.

    A default recorded under another type (the column was widened since) is cast to the field's
    type; one that cannot be is treated as unknown (None is not returned silently for it: the
    ValueError names the column).
    """
    text = (field.metadata or {}).get(DEFAULT_KEY)
    if text is None:
        return None
    try:
        return _decode(text, field.type)
    except (ValueError, TypeError, OverflowError, pa.ArrowException) as exc:
        raise ValueError(
            f"column {field.name!r}: default {text.decode(errors='replace')} recorded in bronze "
            f"does not fit its type {field.type}: {exc}"
        ) from None


def has_unknown_default(field: pa.Field) -> bool:
    return (field.metadata or {}).get(DEFAULT_UNKNOWN_KEY) == b"true"


def with_default(field: pa.Field, source: pa.Field | None) -> pa.Field:
    """`field` carrying the default metadata of `source` (or none when `source` has none)."""
    keys = (DEFAULT_KEY, DEFAULT_UNKNOWN_KEY)
    metadata = {k: v for k, v in (field.metadata or {}).items() if k not in keys}
    for key in keys:
        text = None if source is None else (source.metadata or {}).get(key)
        if text is not None:
            metadata[key] = text
    if metadata == dict(field.metadata or {}):
        return field
    return field.with_metadata(metadata) if metadata else field.remove_metadata()

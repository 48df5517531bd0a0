"""Whether a decoded row's values fit its Arrow schema, checked before a row is buffered.

The decoder passes plain JSON numbers, strings and booleans through unchecked, and pyarrow would
otherwise fail on the whole file at flush time, over and over: the bronze worker dead-letters a
record whose value does not fit (`RowChecks.problem`) instead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

ValueCheck = Callable[[Any], bool]

_INT64_MAX = 2**63 - 1
_NS_MIN = datetime(1677, 9, 21, 0, 12, 44)  # the range of int64 nanoseconds since the epoch
_NS_MAX = datetime(2262, 4, 11, 23, 47, 16)
_DURATION_MAX_US = timedelta(microseconds=_INT64_MAX)


def _int_check(dtype: pa.DataType) -> ValueCheck:
    bits = dtype.bit_width
    if pa.types.is_unsigned_integer(dtype):
        low, high = 0, 2**bits - 1
    else:
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    # `type(v) is int` also refuses bool (an int subclass), as pyarrow does.
    return lambda v: type(v) is int and low <= v <= high


def _float_check(dtype: pa.DataType) -> ValueCheck:
    # pyarrow takes an int into a float column only within the range the float represents
    # exactly (2**24 for float32, 2**53 for float64).
    limit = 2**24 if dtype.bit_width == 32 else 2**53

    def check(v: Any) -> bool:
        kind = type(v)
        return kind is float or (kind is int and -limit <= v <= limit)

    return check


def _string_check(v: Any) -> bool:
    if type(v) is not str:
        return False
    if v.isascii():
        return True
    try:  # json.loads accepts lone surrogates ("\ud800"), which Arrow strings cannot hold
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _binary_check(v: Any) -> bool:
    return isinstance(v, bytes | bytearray | memoryview)


def _decimal_check(dtype: pa.DataType) -> ValueCheck:
    precision, scale = dtype.precision, dtype.scale
    quantum = Decimal(1).scaleb(-scale)
    integer_digits = precision - scale

    def check(v: Any) -> bool:
        if not isinstance(v, Decimal):
            return False
        # Fast path for what the decoder's converter makes (exponent exactly -scale): only the
        # integer digits can overflow. `as_tuple()` alone costs several times this.
        if v.same_quantum(quantum) and v.adjusted() < integer_digits:
            return True
        _, digits, exponent = v.as_tuple()
        if not isinstance(exponent, int):  # NaN, Infinity
            return False
        if exponent < -scale:
            # Rescaling to `scale` drops digits: only zeros may go, as Arrow refuses data loss.
            dropped = -scale - exponent
            if any(digits[-dropped:]):
                return False
            digits = digits[:-dropped] or (0,)
            exponent = -scale
        significant = len(digits) + (exponent + scale) if any(digits) else 1
        return significant <= precision

    return check


def _timestamp_check(dtype: pa.DataType) -> ValueCheck:
    if dtype.unit != "ns":
        return lambda v: isinstance(v, datetime)

    def check(v: Any) -> bool:
        if not isinstance(v, datetime):
            return False
        naive = v.replace(tzinfo=None)
        return _NS_MIN <= naive <= _NS_MAX

    return check


def _date_check(v: Any) -> bool:
    return isinstance(v, date)


def _duration_check(v: Any) -> bool:
    return isinstance(v, timedelta) and -_DURATION_MAX_US <= v <= _DURATION_MAX_US


def value_check(dtype: pa.DataType) -> ValueCheck | None:
    """A test that a Python value converts to `dtype` without error or loss; None: not checked.

    Mirrors what `pa.Table.from_pylist` accepts for the types `cdc.envelope` produces, but
    strictly: a value pyarrow would coerce with loss (1.5 into an int column) is refused too.
    """
    if pa.types.is_integer(dtype):
        return _int_check(dtype)
    if pa.types.is_floating(dtype):
        return _float_check(dtype)
    if pa.types.is_boolean(dtype):
        return lambda v: type(v) is bool
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return _string_check
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return _binary_check
    if pa.types.is_decimal(dtype):
        return _decimal_check(dtype)
    if pa.types.is_timestamp(dtype):
        return _timestamp_check(dtype)
    if pa.types.is_date(dtype):
        return _date_check
    if pa.types.is_duration(dtype):
        return _duration_check
    return None


def _inline_check(dtype: pa.DataType) -> str | None:
    """`value_check(dtype)` as a Python expression over `v`, for the common types; else None."""
    if pa.types.is_integer(dtype):
        bits = dtype.bit_width
        if pa.types.is_unsigned_integer(dtype):
            low, high = 0, 2**bits - 1
        else:
            low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return f"(type(v) is int and {low} <= v <= {high})"
    if pa.types.is_boolean(dtype):
        return "type(v) is bool"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "(type(v) is str and (v.isascii() or _string_check(v)))"
    return None


RowCheck = Callable[[dict[str, Any]], str | None]


def compile_row_check(schema: pa.Schema) -> RowCheck:
    """One function testing every value of a row against `schema`: the first bad column or None.

    It runs for every record, so it is generated as straight-line code, one `if` per column with
    the common checks (integers, strings, booleans) inlined: looping over per-column check
    functions cost about twice as much. Semantics are those of `value_check`.
    """
    namespace: dict[str, Any] = {"_string_check": _string_check}
    lines = ["def first_bad(row):", "    get = row.get"]
    for index, field in enumerate(schema):
        expression = _inline_check(field.type)
        if expression is None:
            check = value_check(field.type)
            if check is None:
                continue
            namespace[f"_check{index}"] = check
            expression = f"_check{index}(v)"
        name = repr(field.name)  # a str's repr is a valid, safely quoted literal
        lines += [
            f"    v = get({name})",
            f"    if v is not None and not {expression}:",
            f"        return {name}",
        ]
    lines.append("    return None")
    # Generated from column names (as repr() literals) and integer bounds only, never from data.
    code = compile("\n".join(lines), f"<row check of {len(schema)} columns>", "exec")
    exec(code, namespace)  # noqa: S102
    return namespace["first_bad"]


class RowChecks:
    """Per row schema, its compiled row check (`compile_row_check`), made once per schema object.

    The decoder caches one Arrow schema per distinct Connect schema, so looking a schema up by
    identity is one dict hit per record; the schema itself is kept so its id is never reused.
    """

    MAX_SCHEMAS = 1024

    def __init__(self) -> None:
        self._plans: dict[int, tuple[pa.Schema, RowCheck]] = {}

    def problem(self, row: dict[str, Any], schema: pa.Schema) -> str | None:
        """Why `row` cannot be stored under `schema`, or None if every value fits."""
        known = self._plans.get(id(schema))
        if known is None or known[0] is not schema:
            if len(self._plans) >= self.MAX_SCHEMAS:
                self._plans.clear()
            known = self._plans[id(schema)] = (schema, compile_row_check(schema))
        name = known[1](row)
        if name is None:
            return None
        value = row.get(name)
        return (
            f"column {name!r}: {_short(value)} ({type(value).__name__}) does not fit "
            f"its schema type {schema.field(name).type}"
        )


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

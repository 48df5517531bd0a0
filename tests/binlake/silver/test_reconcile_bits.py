"""BIT columns in the reconciliation digest: silver's bytes spelled as MySQL spells the number."""

import hashlib

import polars as pl

from binlake.silver.reconcile import (
    UNIT_SEPARATOR,
    ComparedColumn,
    compared_columns,
    silver_digest,
    source_digest_sql,
)


def _md5_64(text: str) -> int:
    return int(hashlib.md5(text.encode()).hexdigest()[:16], 16)


def test_bit_columns_are_compared_as_unsigned_numbers():
    silver = pl.DataFrame(
        {
            "flag": [True, False],  # BIT(1)
            "b5": [b"\x16", b"\x01"],  # BIT(5) b'10110', b'00001'
            "b64": [bytes.fromhex("8000000000000001"), bytes.fromhex("0102030405060708")],
        }
    )
    source = [("flag", "bit", None), ("b5", "bit", None), ("b64", "bit", None)]
    compared, excluded = compared_columns(source, silver, masked=[])
    assert [c.kind for c in compared] == ["bit", "bit", "bit"] and excluded == []

    # What MySQL's CAST(CAST(col AS UNSIGNED) AS CHAR) gives for the same rows.
    mysql_rows = [("1", "22", str(0x8000000000000001)), ("0", "1", str(0x0102030405060708))]
    expected = sum(_md5_64(UNIT_SEPARATOR.join(row)) for row in mysql_rows) % 2**64
    assert silver_digest(silver, compared) == expected

    # A byte-reversed BIT(64) (what silver held before) does not pass.
    reversed_ = silver.with_columns(pl.col("b64").map_elements(lambda b: b[::-1], pl.Binary))
    assert silver_digest(reversed_, compared) != expected


def test_the_source_side_casts_bits_to_unsigned():
    sql = source_digest_sql("shop", "edge_bits", [ComparedColumn("b64", "bit")])
    assert "CAST(CAST(`b64` AS UNSIGNED) AS CHAR)" in sql

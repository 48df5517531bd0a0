from decimal import Decimal

import polars as pl
import pyarrow as pa

from dagster_defs.resources import BronzeLake


def test_read_table_reads_decimal256_columns_as_exact_strings(settings, bronze) -> None:
    # MySQL DECIMAL(65,30) arrives as decimal256; polars has no 256-bit decimal.
    big = Decimal("12345678901234567890123456789012345.123456789012345678901234567890")
    columns = [("id", pa.int64()), ("amount", pa.decimal256(65, 30))]
    bronze.write(
        "shop.ledger",
        [
            bronze.change("c", 0, id=1, amount=big),
            bronze.change("c", 1, id=2, amount=None),
            bronze.change("c", 2, id=3, amount=Decimal("-1E-30")),
        ],
        columns=columns,
        primary_key=["id"],
    )
    read = BronzeLake(storage_url=settings.lake_url).read_table("shop.ledger")
    assert read.frame.schema["amount"] == pl.String
    # fixed point with the column's scale, as MySQL prints it (Arrow's cast would say -1E-30)
    tiny = "-0." + "0" * 29 + "1"
    assert read.frame["amount"].to_list() == [str(big), None, tiny]
    assert Decimal(read.frame["amount"][0]) == big
    assert read.frame["id"].to_list() == [1, 2, 3]

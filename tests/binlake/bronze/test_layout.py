from datetime import UTC, datetime

import pytest

from binlake.bronze.layout import HourBucket, bronze_file_path, is_safe_table_name


def _ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def test_file_name_carries_topic_partition_and_zero_padded_first_offset() -> None:
    bucket = HourBucket.of_millis(_ms(2026, 11, 21, 8, 59, 59))
    path = bronze_file_path("shop.orders", bucket, "binlake.shop.orders", 2, 42)
    assert path == (
        "bronze/shop.orders/date=2026-11-21/hour=08/"
        "binlake.shop.orders+2+00000000000000000042.parquet"
    )


def test_same_first_offset_gives_the_same_name() -> None:
    bucket = HourBucket("2026-11-21", 8)
    first = bronze_file_path("shop.orders", bucket, "binlake.shop.orders", 0, 7)
    assert first == bronze_file_path("shop.orders", bucket, "binlake.shop.orders", 0, 7)


@pytest.mark.parametrize(
    ("moment", "date", "hour"),
    [
        ((2026, 11, 21, 8, 0, 0), "2026-11-21", 8),
        ((2026, 11, 21, 8, 59, 59, 999000), "2026-11-21", 8),
        ((2026, 11, 21, 23, 59, 59, 999000), "2026-11-21", 23),
        ((2026, 11, 22, 0, 0, 0), "2026-11-22", 0),
        ((2024, 2, 29, 12, 30), "2024-02-29", 12),
    ],
)
def test_hour_bucket_is_the_utc_hour_of_the_commit(moment, date, hour) -> None:
    bucket = HourBucket.of_millis(_ms(*moment))
    assert (bucket.date, bucket.hour) == (date, hour)
    assert bucket.partition_key == f"{date}-{hour:02d}:00"
    assert bucket.directory == f"date={date}/hour={hour:02d}"


@pytest.mark.parametrize(
    "table", ["../etc.passwd", "shop/orders.x", "/abs.path", "shop..orders", "shop", "a.b.c", ""]
)
def test_table_names_that_would_escape_the_bronze_root_are_refused(table: str) -> None:
    assert not is_safe_table_name(table)
    with pytest.raises(ValueError, match="not a plain"):
        bronze_file_path(table, HourBucket("2026-11-21", 8), "t", 0, 0)


@pytest.mark.parametrize("topic", ["..", "a/b", "/abs", "x y"])
def test_topic_names_that_cannot_be_file_names_are_refused(topic: str) -> None:
    with pytest.raises(ValueError, match="topic name"):
        bronze_file_path("shop.orders", HourBucket("2026-11-21", 8), topic, 0, 0)

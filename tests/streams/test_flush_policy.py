"""FlushPolicy: the rotation thresholds, built once from the bronze settings."""

from __future__ import annotations

import pytest

from binlake.settings import BronzeSettings
from streams.flush_policy import DEFAULT_FLUSH_BYTES, FlushPolicy


def test_built_from_the_bronze_settings():
    bronze = BronzeSettings(flush_rows=7, flush_seconds=2.5, flush_bytes=1024)
    assert FlushPolicy.from_settings(bronze) == FlushPolicy(rows=7, seconds=2.5, bytes=1024)


def test_the_default_byte_limit_is_the_settings_default():
    assert FlushPolicy(rows=1, seconds=1.0).bytes == DEFAULT_FLUSH_BYTES
    assert BronzeSettings().flush_bytes == DEFAULT_FLUSH_BYTES


@pytest.mark.parametrize(
    "rows, seconds, size", [(0, 1.0, 1), (1, 0.0, 1), (1, -1.0, 1), (1, 1.0, 0)]
)
def test_every_threshold_must_be_positive(rows, seconds, size):
    with pytest.raises(ValueError, match="must be positive"):
        FlushPolicy(rows=rows, seconds=seconds, bytes=size)

"""Masking of personal data before silver (unit level)."""

import polars as pl
import pytest

from binlake.errors import ConfigurationError
from binlake.settings import SilverSettings
from binlake.silver.pii import PiiPolicy


def policy(**overrides) -> PiiPolicy:
    return PiiPolicy.from_settings(SilverSettings(**overrides))


def test_columns_by_pattern_explicit_name_and_table_qualified_name():
    p = policy(pii_columns=["ssn", "shop.orders.note"])
    columns = ["id", "email", "contact_email", "Phone_No", "ssn", "note"]
    assert p.masked_columns("shop.customers", columns) == [
        "email",
        "contact_email",
        "Phone_No",
        "ssn",
    ]
    assert p.masked_columns("shop.orders", columns) == columns[1:]


def test_hash_is_keyed_stable_and_keeps_nulls():
    frame = pl.DataFrame({"id": [1, 2, 3], "email": ["a@x.org", None, "a@x.org"]})
    masked = policy().mask(frame, "shop.customers", frame.columns, ["id"])
    digests = masked["email"].to_list()
    assert digests[0] == digests[2] and len(digests[0]) == 64 and digests[1] is None
    assert "a@x.org" not in digests
    other_key = policy(pii_key="another").mask(frame, "shop.customers", frame.columns, ["id"])
    assert other_key["email"][0] != digests[0]


def test_redact_nulls_and_refuses_key_columns():
    frame = pl.DataFrame({"email": ["a@x.org"], "n": [1]})
    assert policy(pii_mode="redact").mask(frame, "t.t", frame.columns, ["n"])[
        "email"
    ].to_list() == [None]
    with pytest.raises(ConfigurationError, match="primary key"):
        policy(pii_mode="redact").mask(frame, "t.t", frame.columns, ["email"])

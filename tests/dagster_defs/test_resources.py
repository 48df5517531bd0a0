from decimal import Decimal

import dagster as dg
import polars as pl
import pyarrow as pa

from binlake.settings import load_settings
from binlake.storage import LakeStorage
from dagster_defs.resources import SILVER_LAKE, BronzeLake, build_resources


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


def test_lake_access_passes_storage_secrets_as_the_names_of_their_variables(
    settings, monkeypatch
) -> None:
    """Dagster shows resource config in its UI: a secret the environment holds goes in as an
    EnvVar of its variable, resolved only inside a run."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI")
    monkeypatch.setenv("BINLAKE_STORAGE__ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("BINLAKE_STORAGE_URL", "s3://lake/prefix")
    monkeypatch.setenv("BINLAKE_STORAGE__ENDPOINT_URL", "http://127.0.0.1:8333")
    lake = build_resources(load_settings())[SILVER_LAKE]

    config = lake.access
    assert config.secret_access_key == dg.EnvVar("AWS_SECRET_ACCESS_KEY")
    assert config.access_key_id == dg.EnvVar("BINLAKE_STORAGE__ACCESS_KEY_ID")
    assert config.endpoint_url == "http://127.0.0.1:8333"
    assert "wJalrXUtnFEMI" not in repr(lake)
    # resolved, the same options as LakeStorage.from_settings gives
    storage = config.open(lake.storage_url)
    assert storage.storage_options == LakeStorage.from_settings(load_settings()).storage_options
    assert storage.storage_options["AWS_SECRET_ACCESS_KEY"] == "wJalrXUtnFEMI"

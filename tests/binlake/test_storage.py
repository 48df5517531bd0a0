import os
import re

import obstore
import obstore.exceptions
import obstore.store
import pyarrow.fs as pafs
import pytest

from binlake.errors import ConfigurationError, RetriableError, StorageUnavailableError
from binlake.settings import Settings, load_settings
from binlake.storage import LakeStorage, object_store_options
from tests.support.s3_server import S3Lake


def test_atomic_write_leaves_no_temp_file_and_replaces_whole(tmp_path) -> None:
    storage = LakeStorage.from_url(f"file://{tmp_path}")
    storage.write_atomic("bronze/a/b.parquet", b"first")
    storage.write_atomic("bronze/a/b.parquet", b"second")
    assert storage.read_bytes("bronze/a/b.parquet") == b"second"
    assert os.listdir(tmp_path / "bronze" / "a") == ["b.parquet"]


def test_unwritable_location_is_a_retriable_storage_error(tmp_path) -> None:
    if os.geteuid() == 0:
        # root ignores directory permissions; a file in the way of a directory still fails
        (tmp_path / "bronze").write_text("not a directory")
    else:
        tmp_path.chmod(0o500)
    storage = LakeStorage.from_url(str(tmp_path))
    with pytest.raises(StorageUnavailableError, match="cannot write") as error:
        storage.write_atomic("bronze/a/b.parquet", b"x")
    assert isinstance(error.value, RetriableError)


def test_read_from_a_missing_file_is_empty(tmp_path) -> None:
    assert LakeStorage.from_url(str(tmp_path)).read_from("nothing.jsonl", 0) == b""


def _record_directory_fsyncs(monkeypatch) -> list[str]:
    import binlake.storage as storage_module

    synced: list[str] = []
    original = storage_module.fsync_directory

    def record(directory: str) -> None:
        synced.append(os.path.normpath(directory))
        original(directory)

    monkeypatch.setattr(storage_module, "fsync_directory", record)
    return synced


def test_write_atomic_fsyncs_the_parent_of_every_new_directory(tmp_path, monkeypatch) -> None:
    storage = LakeStorage.from_url(str(tmp_path / "lake"))
    synced = _record_directory_fsyncs(monkeypatch)
    relative = "bronze/shop.orders/date=2026-11-21/hour=08/f.parquet"
    storage.write_atomic(relative, b"x")
    expected = [
        "",
        "bronze",
        "bronze/shop.orders",
        "bronze/shop.orders/date=2026-11-21",
        "bronze/shop.orders/date=2026-11-21/hour=08",
    ]
    for directory in expected:
        assert os.path.normpath(storage.full_path(directory)) in synced
    assert str(tmp_path) in synced  # the base itself was created too
    synced.clear()
    storage.write_atomic(relative.replace("hour=08", "hour=09"), b"y")
    date_dir = os.path.normpath(storage.full_path(expected[3]))
    # only hour=09 is new: its parent gets its entry, then the directory the file is renamed in
    assert sorted(synced) == sorted([date_dir, os.path.join(date_dir, "hour=09")])


# --- object stores: options, filesystems, and a real S3 server -------------------------------


def test_s3_options_are_the_object_store_names_and_never_unsafe_rename(monkeypatch) -> None:
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    settings = load_settings(
        storage_url="s3://lake/prefix",
        storage={
            "endpoint_url": "http://127.0.0.1:8333",
            "region": "eu-west-1",
            "access_key_id": "AKIAEXAMPLE",
            "secret_access_key": "wJalrXUtnFEMI",
        },
    )
    assert object_store_options(settings.lake_url, settings.storage) == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:8333",
        "AWS_REGION": "eu-west-1",
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
    }


def test_a_local_lake_has_no_options_and_azure_gcs_pass_the_environment_through(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "a2V5")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/secrets/sa.json")
    storage = load_settings().storage
    assert object_store_options(str(tmp_path), storage) == {}
    assert object_store_options("az://container/p", storage) == {
        "AZURE_STORAGE_ACCOUNT_NAME": "acct",
        "AZURE_STORAGE_ACCOUNT_KEY": "a2V5",
    }
    assert object_store_options("gs://bucket/p", storage) == {
        "GOOGLE_APPLICATION_CREDENTIALS": "/secrets/sa.json"
    }


def test_object_store_urls_open_pyarrow_filesystems_at_the_bucket_prefix() -> None:
    s3 = LakeStorage.from_url(
        "s3://lake/prefix/",
        {"AWS_ENDPOINT_URL": "https://s3.example:9000", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI"},
    )
    assert isinstance(s3.filesystem, pafs.S3FileSystem) and not s3.is_local
    assert (s3.base, s3.url, s3.uri("silver/x")) == (
        "lake/prefix",
        "s3://lake/prefix",
        "s3://lake/prefix/silver/x",
    )
    assert "wJalrXUtnFEMI" not in repr(s3)
    azure = LakeStorage.from_url("abfss://container@acct.dfs.core.windows.net/lake")
    assert isinstance(azure.filesystem, pafs.AzureFileSystem) and azure.base == "container/lake"


@pytest.mark.parametrize(
    ("url", "options", "complaint"),
    [
        ("s3://lake/p", {"AWS_ENDPOINT_URL": "http://127.0.0.1:8333"}, "set AWS_ALLOW_HTTP=true"),
        ("az://container/p", {}, "AZURE_STORAGE_ACCOUNT_NAME"),
        ("hdfs://nn/p", {}, "scheme 'hdfs' is not supported"),
    ],
)
def test_object_store_urls_that_cannot_be_opened_say_why(url, options, complaint) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(complaint)):
        LakeStorage.from_url(url, options)


def test_write_read_exists_on_a_real_s3_server(s3_settings: Settings, s3_lake: S3Lake) -> None:
    storage = LakeStorage.from_settings(s3_settings)
    assert dict(storage.options) == s3_lake.storage_options
    assert not storage.exists("bronze/a/b.parquet")

    storage.write_atomic("bronze/a/b.parquet", b"first")
    storage.write_atomic("bronze/a/b.parquet", b"second")

    assert storage.exists("bronze/a/b.parquet") and storage.exists("bronze/a")
    assert storage.read_bytes("bronze/a/b.parquet") == b"second"
    assert storage.read_from("bronze/a/b.parquet", 3) == b"ond"
    assert storage.read_from("nothing.jsonl", 0) == b""
    # the object really is at s3://<bucket>/<prefix>/bronze/a/b.parquet
    raw = pafs.S3FileSystem(
        access_key=s3_lake.access_key,
        secret_key=s3_lake.secret_key,
        endpoint_override=s3_lake.endpoint_url,
        region=s3_lake.region,
    )
    with raw.open_input_stream(f"{s3_lake.bucket}/{s3_lake.prefix}/bronze/a/b.parquet") as f:
        assert f.read() == b"second"


def test_the_standard_aws_variables_alone_reach_a_real_s3_server(
    s3_lake: S3Lake, monkeypatch
) -> None:
    for key, value in s3_lake.env().items():
        monkeypatch.setenv(key, value)
    storage = LakeStorage.from_settings(load_settings())
    storage.write_atomic("x.txt", b"hello")
    assert storage.read_bytes("x.txt") == b"hello"
    assert storage.storage_options["AWS_ALLOW_HTTP"] == "true"


def test_obstore_reaches_the_same_lake_with_its_own_split_of_the_options(
    s3_settings: Settings,
) -> None:
    storage = LakeStorage.from_settings(s3_settings)
    config, client_options = storage.obstore_options()
    assert client_options == {"allow_http": "true"} and "AWS_ALLOW_HTTP" not in config
    store = obstore.store.from_url(storage.url, config=config, client_options=client_options)

    obstore.put(store, "manifest/00000000000000000001.json", b"{}", mode="create")
    with pytest.raises(obstore.exceptions.AlreadyExistsError):
        obstore.put(store, "manifest/00000000000000000001.json", b"{}", mode="create")
    assert storage.read_bytes("manifest/00000000000000000001.json") == b"{}"

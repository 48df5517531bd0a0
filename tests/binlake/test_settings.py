import re

import pytest
from pydantic import ValidationError

from binlake.settings import CONFIG_FILE_ENV, load_settings


def test_defaults_validate_and_locate_the_lake_under_the_state_dir(tmp_path) -> None:
    settings = load_settings(state_dir=tmp_path)
    assert settings.lake_url == str((tmp_path / "lake").resolve())
    assert settings.topic_for("shop.orders") == "binlake.shop.orders"


def test_environment_variables_override_nested_fields(monkeypatch) -> None:
    monkeypatch.setenv("BINLAKE_MYSQL__PORT", "3399")
    monkeypatch.setenv("BINLAKE_TABLES", '["shop.orders"]')
    settings = load_settings()
    assert settings.mysql.port == 3399
    assert settings.tables == ["shop.orders"]


def test_a_toml_file_is_read_and_env_wins_over_it(tmp_path, monkeypatch) -> None:
    config = tmp_path / "binlake.toml"
    config.write_text(
        'storage_url = "s3://bucket/lake"\n[bronze]\nflush_rows = 10\nflush_seconds = 3.5\n'
    )
    monkeypatch.setenv(CONFIG_FILE_ENV, str(config))
    monkeypatch.setenv("BINLAKE_BRONZE__FLUSH_ROWS", "20")
    settings = load_settings()
    assert settings.lake_url == "s3://bucket/lake"
    assert (settings.bronze.flush_rows, settings.bronze.flush_seconds) == (20, 3.5)


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"tables": ["orders"]}, "must be <db>.<table>"),
        ({"tables": ["other.orders"]}, "outside mysql.databases"),
        ({"bronze": {"flush_rows": 0}}, "flush_rows"),
        ({"mysql": {"port": 70000}}, "port"),
        ({"kafka": {"topic_prefix": "a/b"}}, "topic prefix"),
        ({"unknown_knob": 1}, "unknown_knob"),
    ],
)
def test_bad_settings_fail_at_load_naming_the_field(overrides, complaint) -> None:
    with pytest.raises(ValidationError, match=complaint):
        load_settings(**overrides)


def test_missing_config_file_is_named(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(CONFIG_FILE_ENV, str(tmp_path / "nope.toml"))
    with pytest.raises(FileNotFoundError, match=r"nope.toml"):
        load_settings()


def test_child_environment_round_trips_and_secrets_stay_hidden_in_repr(monkeypatch) -> None:
    settings = load_settings(mysql={"password": "s3cret"})
    assert "s3cret" not in repr(settings)
    for key, value in settings.env().items():
        monkeypatch.setenv(key, value)
    again = load_settings()
    assert again.mysql.password.get_secret_value() == "s3cret"
    assert again.model_dump() == settings.model_dump() | {
        "state_dir": again.state_dir,
        "storage_url": again.storage_url,
    }


def test_prod_refuses_the_local_pii_key_and_bad_patterns() -> None:
    with pytest.raises(ValidationError, match="pii_key is the local default"):
        load_settings(environment="prod")
    assert load_settings(environment="prod", silver={"pii_key": "s3cret"}).environment == "prod"
    with pytest.raises(ValidationError, match="not a regular expression"):
        load_settings(silver={"pii_patterns": ["(unclosed"]})


STORAGE_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ALLOW_HTTP",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
)


@pytest.fixture
def no_aws_environment(monkeypatch) -> None:
    for name in STORAGE_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    "url",
    [
        "s3://lake/prefix",
        "gs://lake/prefix",
        "az://container/prefix",
        "abfss://container@account.dfs.core.windows.net/prefix",
        "file:///srv/lake",
        "/srv/lake",
        "relative/lake",
    ],
)
def test_supported_storage_urls_load(url) -> None:
    assert load_settings(storage_url=url).storage_url == url


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("hdfs://namenode/lake", "unsupported scheme 'hdfs'; use a local path, file://, s3://"),
        ("s3:///prefix", "names no bucket or container"),
        ("s3://lake/prefix?versionId=1", "no query or fragment"),
    ],
)
def test_unsupported_storage_urls_fail_naming_what_is_wrong(url, complaint) -> None:
    with pytest.raises(ValidationError, match=re.escape(complaint)) as error:
        load_settings(storage_url=url)
    assert "storage_url" in str(error.value)


def test_credentials_in_a_storage_url_are_refused_and_never_echoed() -> None:
    for url in ("s3://AKIAEXAMPLE:wJalrXUtnFEMI@lake/prefix", "hdfs://user:wJalrXUtnFEMI@nn/x"):
        with pytest.raises(ValidationError) as error:
            load_settings(storage_url=url)
        assert "wJalrXUtnFEMI" not in str(error.value)


def test_storage_falls_back_to_the_standard_aws_variables(monkeypatch, no_aws_environment) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8333/")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI")
    monkeypatch.setenv("BINLAKE_STORAGE__REGION", "eu-central-1")  # binlake's own wins

    storage = load_settings(storage_url="s3://lake/p").storage

    assert (storage.endpoint_url, storage.region) == ("http://127.0.0.1:8333", "eu-central-1")
    assert storage.access_key_id.get_secret_value() == "AKIAEXAMPLE"
    assert storage.secret_access_key.get_secret_value() == "wJalrXUtnFEMI"
    assert storage.http_allowed, "an http:// endpoint allows plain HTTP unless told otherwise"


def test_storage_secrets_stay_hidden_and_round_trip_to_children(
    monkeypatch, no_aws_environment
) -> None:
    settings = load_settings(
        storage_url="s3://lake/p",
        storage={"endpoint_url": "https://s3.example", "secret_access_key": "wJalrXUtnFEMI"},
    )
    assert "wJalrXUtnFEMI" not in repr(settings) + str(settings)
    assert "wJalrXUtnFEMI" not in str(settings.model_dump())
    for key, value in settings.env().items():
        monkeypatch.setenv(key, value)
    again = load_settings()
    assert again.storage.secret_access_key.get_secret_value() == "wJalrXUtnFEMI"
    assert again.storage == settings.storage
    assert again.storage.allow_http is None and not again.storage.http_allowed


@pytest.mark.parametrize(
    ("storage", "complaint"),
    [
        ({"endpoint_url": "127.0.0.1:8333"}, "must be http(s)://host[:port]"),
        ({"endpoint_url": "http://k:s@127.0.0.1:8333"}, "must not carry credentials"),
        ({"endpoint_url": "http://127.0.0.1:8333", "allow_http": False}, "allow_http is false"),
    ],
)
def test_bad_storage_settings_fail_at_load(storage, complaint, no_aws_environment) -> None:
    with pytest.raises(ValidationError, match=re.escape(complaint)):
        load_settings(storage=storage)

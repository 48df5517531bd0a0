import os
import re

import pytest
from pydantic import ValidationError

from binlake import failpoints
from binlake.settings import CONFIG_FILE_ENV, Settings, load_settings
from binlake.settings_errors import (
    OTHER_VARIABLES,
    InvalidSettings,
    environment_problems,
    validation_problems,
)


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


def test_a_missing_or_unreadable_config_file_is_one_line(monkeypatch, tmp_path) -> None:
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv(CONFIG_FILE_ENV, str(missing))
    with pytest.raises(InvalidSettings) as raised:
        load_settings()
    assert raised.value.problems == [f"BINLAKE_CONFIG={missing}: no such file"]
    broken = tmp_path / "broken.toml"
    broken.write_text("[mysql\n")
    monkeypatch.setenv(CONFIG_FILE_ENV, str(broken))
    with pytest.raises(InvalidSettings) as raised:
        load_settings()
    [problem] = raised.value.problems
    assert problem.startswith(f"BINLAKE_CONFIG={broken}: cannot be read as TOML: ")


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("BINLAKE_MYSQL__PASWORD", "BINLAKE_MYSQL__PASSWORD"),
        ("BINLAKE_STORAG_URL", "BINLAKE_STORAGE_URL"),
        ("BINLAKE_MYSQL_PORT", "BINLAKE_MYSQL__PORT"),  # one underscore where two nest
        ("binlake_kafka__bootstrap_server", "BINLAKE_KAFKA__BOOTSTRAP_SERVERS"),
    ],
)
def test_a_mistyped_variable_is_an_error_naming_the_setting_meant(
    monkeypatch, variable, meant
) -> None:
    monkeypatch.setenv(variable, "x")
    with pytest.raises(InvalidSettings) as raised:
        load_settings()
    assert raised.value.problems == [f"{variable} is not a binlake setting; did you mean {meant}?"]


def test_a_variable_like_no_setting_is_named_alone(monkeypatch) -> None:
    monkeypatch.setenv("BINLAKE_ZZZZZZ", "1")
    with pytest.raises(InvalidSettings, match=r"^BINLAKE_ZZZZZZ is not a binlake setting$"):
        load_settings()


def test_every_variable_binlake_sets_or_reads_is_known(monkeypatch) -> None:
    settings = load_settings(mysql={"password": "s3cret"})
    assert environment_problems(Settings, settings.env()) == []  # what children get
    assert failpoints.ENV_VAR in OTHER_VARIABLES
    monkeypatch.setenv("binlake_mysql__port", "3399")  # names match whatever their case
    monkeypatch.setenv("BINLAKE_CONNECT__COLUMN_EXCLUDE_LIST", '["shop.orders.note"]')
    assert load_settings().mysql.port == 3399


def test_a_json_setting_that_is_not_json_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("BINLAKE_TABLES", "shop.orders")
    monkeypatch.setenv("BINLAKE_MYSQL", '{"password": "hunter2"')  # a group, holding a secret
    with pytest.raises(InvalidSettings) as raised:
        load_settings()
    assert raised.value.problems == [
        "BINLAKE_MYSQL='***': not JSON (a JSON list or object)",
        'BINLAKE_TABLES=\'shop.orders\': not JSON (a JSON list, e.g. ["a", "b"])',
    ]


def problems_of(environ: dict[str, str], monkeypatch, **overrides) -> list[str]:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as raised:
        load_settings(**overrides)
    return validation_problems(
        raised.value,
        Settings,
        os.environ,
        config_file=os.environ.get(CONFIG_FILE_ENV),
        overrides=overrides,
    )


def test_a_bad_value_names_the_variable_and_the_value(monkeypatch) -> None:
    problems = problems_of(
        {
            "BINLAKE_MYSQL__PORT": "abc",
            "BINLAKE_BRONZE__FLUSH_ROWS": "0",
            "BINLAKE_MYSQL__FLAVOR": "postgres",
            "BINLAKE_CONNECT__EXACTLY_ONCE": "maybe",
            "BINLAKE_TABLES": '["shop.orders", 3]',
        },
        monkeypatch,
    )
    assert sorted(problems) == [
        "BINLAKE_BRONZE__FLUSH_ROWS='0': must be >= 1",
        "BINLAKE_CONNECT__EXACTLY_ONCE='maybe': not a boolean (true or false)",
        "BINLAKE_MYSQL__FLAVOR='postgres': must be 'mysql' or 'mariadb'",
        "BINLAKE_MYSQL__PORT='abc': not an integer",
        "BINLAKE_TABLES='[\"shop.orders\", 3]' (item 1): not a string",
    ]


def test_a_bad_value_never_shows_a_secret(monkeypatch) -> None:
    problems = problems_of(
        {
            "BINLAKE_STORAGE_URL": "ftp://AKIAEXAMPLE:wJalrXUtnFEMI@lake/prefix",
            "BINLAKE_STORAGE": '{"secret_access_key": "hunter2", "allow_http": "perhaps"}',
        },
        monkeypatch,
    )
    text = "\n".join(problems)
    assert "BINLAKE_STORAGE_URL='ftp://***@lake/prefix': " in text
    assert "BINLAKE_STORAGE='***' (allow_http): not a boolean (true or false)" in text
    assert "wJalrXUtnFEMI" not in text and "hunter2" not in text and "AKIAEXAMPLE" not in text


def test_a_bad_value_from_the_config_file_or_an_argument_says_so(tmp_path, monkeypatch) -> None:
    config = tmp_path / "binlake.toml"
    config.write_text('[mysql]\nport = "q"\n')
    assert problems_of({CONFIG_FILE_ENV: str(config)}, monkeypatch) == [
        f"mysql.port='q' in {config}: not an integer"
    ]
    monkeypatch.delenv(CONFIG_FILE_ENV)
    assert problems_of({}, monkeypatch, bronze={"flush_seconds": -1}) == [
        "bronze.flush_seconds=-1: must be > 0.0"
    ]
    # A rule across fields names them itself.
    assert problems_of({"BINLAKE_ENVIRONMENT": "prod"}, monkeypatch)[0].startswith(
        "silver.pii_key is the local default"
    )


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

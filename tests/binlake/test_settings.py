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

import pytest
from listings.settings import SettingsError, load_settings

pytestmark = pytest.mark.unit

GOOD_PEPPER = "q9V1tR7xLm2Zp8Kd4Hs6Wn3Yb5Jc0Fg1Ua7Ei9Oo2"
GOOD_DB = "postgresql+asyncpg://listings:Xk29fj20ZmQp4Lr8Wt@postgres:5432/listings"
GOOD_REDIS = "redis://:Rb73kdPq02LmZx9TyW@redis:6379/0"


def production(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "env": "production",
        "api_key_pepper": GOOD_PEPPER,
        "database_url": GOOD_DB,
        "redis_url": GOOD_REDIS,
    }
    values.update(overrides)
    return values


def problems(**overrides: object) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(**production(**overrides))
    return str(info.value)


def test_a_complete_production_configuration_is_accepted() -> None:
    settings = load_settings(**production())
    assert settings.strict
    assert settings.docs_on is False


def test_local_defaults_start_without_any_secret() -> None:
    settings = load_settings()
    assert settings.env == "local"
    assert settings.docs_on is True


@pytest.mark.parametrize("env", ["staging", "production"])
def test_a_missing_pepper_is_refused_and_named(env: str) -> None:
    message = problems(env=env, api_key_pepper=None)
    assert "LISTINGS_API_KEY_PEPPER is missing" in message


@pytest.mark.parametrize(
    "pepper",
    [
        "change-me-change-me-change-me-change-me",
        "changeme-please-0123456789abcdefghijkl",
        "this-is-an-example-pepper-0123456789abc",
        "dev-pepper-0123456789abcdefghijklmnopqrs",
    ],
)
def test_a_placeholder_pepper_is_refused(pepper: str) -> None:
    assert "LISTINGS_API_KEY_PEPPER looks like a placeholder" in problems(api_key_pepper=pepper)


def test_a_short_pepper_is_refused() -> None:
    assert "shorter than 32" in problems(api_key_pepper="short")


def test_random_tokens_that_contain_dev_letters_are_not_placeholders() -> None:
    load_settings(**production(api_key_pepper="Ab3devQ9x7Lm2Zp8Kd4Hs6Wn3Yb5Jc0Fg1Ua7E"))


def test_a_database_url_without_password_is_refused() -> None:
    message = problems(database_url="postgresql+asyncpg://listings@postgres/listings")
    assert "LISTINGS_DATABASE_URL has no password" in message


def test_a_placeholder_redis_password_is_refused() -> None:
    message = problems(redis_url="redis://:change-me-redis-password@redis:6379/0")
    assert "LISTINGS_REDIS_URL password looks like a placeholder" in message


def test_debug_is_refused_in_production() -> None:
    assert "LISTINGS_DEBUG is on" in problems(debug=True)


def test_docs_are_refused_in_production() -> None:
    assert "LISTINGS_DOCS_ENABLED is on" in problems(docs_enabled=True)


def test_every_problem_is_reported_at_once() -> None:
    message = problems(api_key_pepper=None, debug=True)
    assert "LISTINGS_API_KEY_PEPPER" in message
    assert "LISTINGS_DEBUG" in message


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTINGS_ENV", "production")
    monkeypatch.setenv("LISTINGS_API_KEY_PEPPER", "changeme")
    monkeypatch.setenv("LISTINGS_DATABASE_URL", GOOD_DB)
    monkeypatch.setenv("LISTINGS_REDIS_URL", GOOD_REDIS)
    with pytest.raises(SettingsError, match="LISTINGS_API_KEY_PEPPER"):
        load_settings()


def test_a_malformed_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTINGS_MAX_FEED_BYTES", "lots")
    with pytest.raises(SettingsError, match="LISTINGS_MAX_FEED_BYTES"):
        load_settings()


def test_an_unknown_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTINGS_ENV", "prod")
    with pytest.raises(SettingsError, match="LISTINGS_ENV"):
        load_settings()


def test_the_cli_refuses_to_start_and_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from listings.cli import main

    monkeypatch.setenv("LISTINGS_ENV", "production")
    assert main(["check-settings"]) == 2
    assert "LISTINGS_API_KEY_PEPPER" in capsys.readouterr().err

"""Optional Sentry: off without a DSN (not even imported), configured without personal data."""

import asyncio
import sys
from typing import Any

import pytest
import sentry_sdk
from listings import cli
from listings.api.app import create_app
from listings.ingest import worker
from listings.logs import request_id_var
from listings.sentry import CONTACT_FIELDS, init_sentry
from listings.settings import SettingsError, load_settings
from sentry_sdk.integrations.asyncio import AsyncioIntegration
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.starlette import StarletteIntegration

pytestmark = pytest.mark.unit

DSN = "http://publickey@127.0.0.1:9/42"
NOWHERE = {
    "database_url": "postgresql+asyncpg://listings:unused@127.0.0.1:1/listings",
    "redis_url": "redis://127.0.0.1:1/0",
}


@pytest.fixture
def init_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """sentry_sdk.init replaced by a recorder: no Sentry server can run here."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(sentry_sdk, "init", lambda **kwargs: calls.append(kwargs))
    return calls


def test_without_a_dsn_sentry_is_never_imported(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    # A None entry makes any `import sentry_sdk` fail: the app and the worker must not try.
    monkeypatch.setitem(sys.modules, "sentry_sdk", None)
    settings = load_settings(env="production", **production_secrets())
    assert settings.sentry_dsn is None
    assert init_sentry(settings, "worker") is False
    create_app(load_settings(env="test", **NOWHERE))


def test_an_empty_dsn_means_off() -> None:
    assert load_settings(sentry_dsn="").sentry_dsn is None
    assert load_settings(sentry_dsn="  ").sentry_dsn is None


def test_with_a_dsn_the_api_starts_sentry_without_personal_data(
    init_calls: list[dict[str, Any]], restore_logging: None
) -> None:
    create_app(load_settings(env="test", version="1.2.3", sentry_dsn=DSN, **NOWHERE))
    [options] = init_calls
    assert options["dsn"] == DSN
    assert options["environment"] == "test"
    assert options["release"] == "1.2.3"
    assert options["send_default_pii"] is False
    assert options["max_request_body_size"] == "never"  # feeds carry contact details
    assert options["include_local_variables"] is False
    assert options["auto_enabling_integrations"] is False
    assert {type(i) for i in options["integrations"]} == {StarletteIntegration, FastApiIntegration}
    assert not options.get("traces_sample_rate")
    scrubber = options["event_scrubber"]
    assert set(CONTACT_FIELDS) <= set(scrubber.denylist)
    assert scrubber.recursive


def test_with_a_dsn_the_worker_starts_sentry_in_its_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(env="staging", sentry_dsn=DSN, **production_secrets())
    calls: list[tuple[dict[str, Any], asyncio.AbstractEventLoop]] = []
    loops: list[asyncio.AbstractEventLoop] = []

    def init(**options: Any) -> None:
        # The asyncio integration can only hook into a loop that already runs.
        calls.append((options, asyncio.get_running_loop()))

    async def run(self: worker.Worker) -> None:
        loops.append(asyncio.get_running_loop())

    monkeypatch.setattr(sentry_sdk, "init", init)
    monkeypatch.setattr(worker.Worker, "run", run)
    worker.run_worker(settings)
    [(options, loop)] = calls
    assert loops == [loop]
    assert (options["environment"], options["send_default_pii"]) == ("staging", False)
    assert options["release"] == settings.version
    assert [type(i) for i in options["integrations"]] == [AsyncioIntegration]


def test_events_carry_the_service_and_request_id_and_no_query_string(
    init_calls: list[dict[str, Any]],
) -> None:
    assert init_sentry(load_settings(sentry_dsn=DSN), "worker")
    before_send = init_calls[0]["before_send"]
    token = request_id_var.set("req-7")
    try:
        event = before_send({"message": "boom"}, {})
    finally:
        request_id_var.reset(token)
    assert event["tags"] == {"service": "worker", "request_id": "req-7"}
    event = before_send({"request": {"url": "http://x/api/v1/listings", "query_string": "q=a"}}, {})
    assert event["request"] == {"url": "http://x/api/v1/listings"}
    assert before_send({}, {})["tags"] == {"service": "worker"}


@pytest.mark.parametrize(
    ("dsn", "reason"),
    [
        ("sentry.example.org/42", "scheme"),
        ("ftp://key@sentry.example.org/42", "scheme"),
        ("https://sentry.example.org/42", "public key"),
        ("https://key@sentry.example.org/", "project id"),
        ("https://key@sentry.example.org/project", "project id"),
        ("https://key@:443/42", "host"),
        ("https://key@sentry.example.org:port/42", "parse"),
    ],
)
def test_an_invalid_dsn_is_refused_at_start_naming_the_setting(dsn: str, reason: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(sentry_dsn=dsn)
    message = str(info.value)
    assert "LISTINGS_SENTRY_DSN" in message
    assert reason in message
    assert dsn not in message  # a secret is never echoed


def test_the_command_refuses_to_start_with_an_invalid_dsn(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LISTINGS_SENTRY_DSN", "https://secret-key-123@sentry.example.org/")
    assert cli.main(["check-settings"]) == 2
    err = capsys.readouterr().err
    assert "LISTINGS_SENTRY_DSN" in err
    assert "secret-key-123" not in err


def test_the_dsn_is_kept_secret_in_the_settings() -> None:
    settings = load_settings(sentry_dsn="https://secret-key-123@sentry.example.org/42")
    assert "secret-key-123" not in repr(settings)
    assert "secret-key-123" not in str(settings.model_dump())


def production_secrets() -> dict[str, str]:
    return {
        "api_key_pepper": "q9V1tR7xLm2Zp8Kd4Hs6Wn3Yb5Jc0Fg1Ua7Ei9Oo2",
        "database_url": "postgresql+asyncpg://listings:Xk29fj20ZmQp4Lr8Wt@127.0.0.1:1/listings",
        "redis_url": "redis://:Rb73kdPq02LmZx9TyW@127.0.0.1:1/0",
    }

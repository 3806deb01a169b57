import json
import logging
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger as GunicornLogger
from listings import gunicorn_conf
from listings.api.app import create_app
from listings.api.middleware import incoming_request_id
from listings.logs import JsonFormatter, configure_logging, request_id_var
from listings.settings import load_settings

pytestmark = pytest.mark.unit


def render(message: str, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("listings.test", logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    line = JsonFormatter("api").format(record)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_a_log_line_is_one_json_object_with_the_request_id() -> None:
    token = request_id_var.set("req-42")
    try:
        entry = render("job done", job_id="j1", color_message="\x1b[1mjob done\x1b[0m")
    finally:
        request_id_var.reset(token)
    assert entry["message"] == "job done"
    assert entry["level"] == "info"
    assert entry["service"] == "api"
    assert entry["request_id"] == "req-42"
    assert entry["job_id"] == "j1"
    assert "color_message" not in entry
    assert str(entry["timestamp"]).endswith("Z")


def test_a_log_line_outside_a_request_has_a_null_request_id() -> None:
    assert render("worker starting")["request_id"] is None


def test_a_well_formed_incoming_request_id_is_kept() -> None:
    assert incoming_request_id([(b"x-request-id", b"0f3a-9b_c.d:e")]) == "0f3a-9b_c.d:e"


@pytest.mark.parametrize(
    "value", [b"", b"has space", b"line\nbreak", b"x" * 129, b"<script>", b"\xff\xfe"]
)
def test_a_malformed_request_id_is_replaced(value: bytes) -> None:
    generated = incoming_request_id([(b"x-request-id", value)])
    assert generated != value.decode("latin-1")
    assert len(generated) == 32


def test_a_missing_request_id_is_generated() -> None:
    assert len(incoming_request_id([(b"host", b"example")])) == 32


REQUIRED = {"timestamp", "level", "service", "message", "request_id"}
CONTACTS = {
    "contact_name": "Jeanne Agent",
    "contact_email": "jeanne.agent@agency.example",
    "contact_phone": "+33 6 12 34 56 78",
}


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every line of `output` parsed; fails on any line that is not one JSON object."""
    entries = []
    for line in output.splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        assert entry.keys() >= REQUIRED, line
        entries.append(entry)
    return entries


@pytest.mark.parametrize("service", ["api", "worker"])
def test_every_logger_writes_json_lines_naming_the_service(
    service: str, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(service)
    logging.getLogger("listings.worker").info("job done", extra={"job_id": "j1"})
    logging.getLogger("uvicorn.error").warning("uvicorn says %s", "hi")
    logging.getLogger("gunicorn.error").error("gunicorn says hi")
    logging.getLogger("sqlalchemy.engine").warning("a library says hi")
    entries = json_lines(capsys.readouterr().out)
    assert [e["message"] for e in entries] == [
        "job done",
        "uvicorn says hi",
        "gunicorn says hi",
        "a library says hi",
    ]
    assert {e["service"] for e in entries} == {service}
    assert [e["level"] for e in entries] == ["info", "warning", "error", "warning"]


def test_gunicorns_own_log_lines_are_json_from_the_api(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # gunicorn's master process logs before any app exists: its logging comes from
    # gunicorn_conf.logconfig_dict alone, set up by gunicorn's own Logger as at start.
    cfg = Config()
    for name in ("logconfig_dict", "loglevel", "errorlog", "accesslog"):
        cfg.set(name, getattr(gunicorn_conf, name))
    logger = GunicornLogger(cfg)
    logger.info("Starting gunicorn %s", "27")
    logger.error("Worker (pid:%s) was sent SIGKILL!", 42)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("Exception in worker process")
    entries = json_lines(capsys.readouterr().out)
    assert [e["message"] for e in entries] == [
        "Starting gunicorn 27",
        "Worker (pid:42) was sent SIGKILL!",
        "Exception in worker process",
    ]
    assert {e["service"] for e in entries} == {"api"}
    assert "RuntimeError: boom" in entries[2]["exception"]


async def test_a_failing_request_with_contact_data_logs_none_of_it(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(
        load_settings(
            env="test",
            database_url="postgresql+asyncpg://listings:unused@127.0.0.1:1/listings",
            redis_url="redis://127.0.0.1:1/0",
            db_timeout_s=1,
        )
    )
    listing = {"source": "s", "source_id": "1", "title": "t", "kind": "house", "price": 1}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://listings.test") as http:
        # The database is unreachable: the key lookup fails and the error is logged in full.
        response = await http.post(
            "/api/v1/listings",
            json={**listing, **CONTACTS},
            params={"contact_email": CONTACTS["contact_email"]},
            headers={"Authorization": "Bearer slw_secret-key-value", "X-Request-ID": "req-pii"},
        )
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-pii"
    assert response.json()["error"] == "internal error"
    output = capsys.readouterr().out
    entries = json_lines(output)
    ours = [e for e in entries if e["logger"].startswith("listings")]
    assert [(e["message"], e["request_id"]) for e in ours] == [
        ("unhandled error", "req-pii"),
        ("request", "req-pii"),
    ]
    assert "Traceback" in ours[0]["exception"]
    assert ours[1]["status"] == 500
    # The service's lines only: httpx logs the test client's own URL.
    service_lines = "\n".join(json.dumps(e) for e in entries if e["logger"] != "httpx")
    for value in [*CONTACTS.values(), "slw_secret-key-value"]:
        for form in (value, quote(value), json.dumps(value)[1:-1]):
            assert form not in service_lines

import json
import logging

import pytest
from listings.api.middleware import incoming_request_id
from listings.logs import JsonFormatter, request_id_var

pytestmark = pytest.mark.unit


def render(message: str, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("listings.test", logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    line = JsonFormatter("listings-api").format(record)
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
    assert entry["service"] == "listings-api"
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

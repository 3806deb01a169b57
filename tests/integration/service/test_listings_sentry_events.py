"""Sentry events really leave the API, to the server the DSN names, without personal data.

A Sentry server cannot run here, but sentry-sdk sends to whatever HTTP endpoint the DSN gives:
a small HTTP server on the loopback stands in for it and keeps what it receives. The API runs
in a child process (as in production, sentry-sdk is set up by create_app and flushes at exit),
with a database nobody listens on, so a request with contact details fails with a real error.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from free_port import free_port

pytestmark = pytest.mark.integration

CONTACTS = {
    "contact_name": "Jeanne Agent",
    "contact_email": "jeanne.agent@agency.example",
    "contact_phone": "+33 6 12 34 56 78",
}
API_KEY = "slw_never-sent-to-sentry"
REQUEST_ID = "req-sentry-1"

# The child: the real app, one request that fails on the unreachable database, then exit.
CHILD = textwrap.dedent(
    f"""
    import httpx, asyncio
    from listings.api.app import create_app

    async def main():
        app = create_app()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://listings.test") as c:
            listing = {{"source": "s", "source_id": "1", "title": "t", "kind": "house",
                        "price": 1, "city": "Rennes", **{CONTACTS!r}}}
            response = await c.post(
                "/api/v1/listings",
                json=listing,
                params={{"contact_email": {CONTACTS["contact_email"]!r}}},
                headers={{"Authorization": "Bearer {API_KEY}", "X-Request-ID": "{REQUEST_ID}"}},
            )
            print("STATUS", response.status_code)

    asyncio.run(main())
    """
)


class Received:
    """Envelopes posted to the stand-in server, decoded into their items."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()

    def items(self) -> list[tuple[dict[str, Any], dict[str, Any], Any]]:
        """(envelope header, item header, item payload) of every item received."""
        found = []
        with self.lock:
            bodies = list(self.raw)
        for body in bodies:
            lines = body.split(b"\n")
            envelope = json.loads(lines[0])
            rest = lines[1:]
            while len(rest) >= 2 and rest[0].strip():
                header = json.loads(rest[0])
                payload = rest[1]
                try:
                    parsed: Any = json.loads(payload)
                except ValueError:
                    parsed = payload
                found.append((envelope, header, parsed))
                rest = rest[2:]
        return found


@pytest.fixture
def sentry_server() -> Iterator[tuple[int, Received]]:
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            encoding = self.headers.get("Content-Encoding")
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "br":  # sentry-sdk's choice when brotli is installed
                import brotli

                body = brotli.decompress(body)
            with received.lock:
                received.raw.append(body)
                received.paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()


def run_child(env_overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTINGS_")}
    env.update(
        LISTINGS_ENV="test",
        LISTINGS_VERSION="9.8.7",
        LISTINGS_DATABASE_URL=f"postgresql+asyncpg://listings:x@127.0.0.1:{free_port()}/listings",
        LISTINGS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        LISTINGS_DB_TIMEOUT_S="2",
        **env_overrides,
    )
    result = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "STATUS 500" in result.stdout, result.stdout + result.stderr
    return result


def test_an_unhandled_error_reaches_sentry_with_environment_release_and_no_personal_data(
    sentry_server: tuple[int, Received],
) -> None:
    port, received = sentry_server
    run_child({"LISTINGS_SENTRY_DSN": f"http://publickey@127.0.0.1:{port}/42"})

    events = [
        (env, payload) for env, header, payload in received.items() if header["type"] == "event"
    ]
    assert len(events) == 1, received.items()
    envelope, event = events[0]
    assert event["environment"] == "test"
    assert event["release"] == "9.8.7"
    assert event["level"] == "error"
    assert event["tags"]["service"] == "api"
    assert event["tags"]["request_id"] == REQUEST_ID
    assert event["request"]["method"] == "POST"
    assert event["request"]["url"].endswith("/api/v1/listings")
    exception = event["exception"]["values"][-1]
    assert exception["type"] in ("ConnectionRefusedError", "OSError"), exception
    assert envelope["event_id"] == event["event_id"]
    assert set(received.paths) == {"/api/42/envelope/"}

    everything = b"\n".join(received.raw).decode()
    for value in [*CONTACTS.values(), API_KEY]:
        assert value not in everything
        assert json.dumps(value)[1:-1] not in everything
    assert "jeanne.agent%40agency.example" not in everything  # the query string
    assert not event["request"].get("data")  # no body, whatever its size
    assert "query_string" not in event["request"]


def test_without_a_dsn_nothing_is_sent(sentry_server: tuple[int, Received]) -> None:
    _, received = sentry_server
    result = run_child({"LISTINGS_SENTRY_DSN": ""})
    assert "sentry" not in result.stderr.lower()
    assert received.raw == []

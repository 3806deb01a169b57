"""The edge's limits, end to end: streamed uploads, body size, upload concurrency, rate limits.

Load stays small and on the loopback: raw TLS sockets for the cases where the exact bytes on the
wire matter (a Content-Length nginx must judge on its own, a body that is not finished), and
bursts bounded to a few hundred requests in total.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import docker
import httpx
import pytest
import yaml
from stack_names import PROJECT
from support.waiting import wait_for

if TYPE_CHECKING:
    from conftest import Stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
ANSWER_WITHIN_S = 15.0


def _size_bytes(size: str) -> int:
    """nginx size (67108864, 512k, 64m, 1g) -> bytes."""
    units = {"k": 1024, "m": MIB, "g": 1024 * MIB}
    suffix = size[-1].lower()
    return int(size[:-1]) * units[suffix] if suffix in units else int(size)


def _max_feed_bytes() -> int:
    """The e2e environment is local.yaml renamed (conftest): its nginx ingest limit."""
    local = yaml.safe_load((ROOT / "environments" / "local.yaml").read_text())
    return _size_bytes(str(local.get("nginx", {}).get("max_feed_size", "64m")))


def _connect(stack: Stack) -> ssl.SSLSocket:
    """HTTP/1.1 over verified TLS (no ALPN, so nginx speaks HTTP/1.1)."""
    context = ssl.create_default_context(cafile=str(stack.ca_path))
    raw = socket.create_connection(("127.0.0.1", stack.https_port), timeout=ANSWER_WITHIN_S)
    return context.wrap_socket(raw, server_hostname="localhost")


def _upload_head(stack: Stack, content_length: int, key: str | None = None) -> bytes:
    lines = [
        "POST /api/v1/ingest HTTP/1.1",
        f"Host: localhost:{stack.https_port}",
        "Content-Type: text/csv",
        f"Content-Length: {content_length}",
        "Connection: close",
    ]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(sock: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1.1 response.

    Raises TimeoutError when nothing complete arrives within ANSWER_WITHIN_S.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a full response: {data[:300]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        while len(body) < int(headers["content-length"]):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    elif headers.get("transfer-encoding") == "chunked":
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        body = _dechunk(body)
    return int(status_line.split()[1]), headers, body


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + rest[:size], rest[size + 2 :]
    return out


def test_an_unauthenticated_upload_gets_401_before_its_body_is_sent(stack: Stack) -> None:
    """nginx streams the body to the API, which refuses the missing key at once.

    With request buffering on, nginx would wait for (and spool to its tmpfs) the whole declared
    body before the API ever saw the request: this client, which has sent 1 of 48 MiB, would
    get no answer at all.
    """
    declared = 48 * MIB
    with _connect(stack) as sock:
        sock.sendall(_upload_head(stack, declared))
        sock.sendall(b"source,source_id,title\n" + b"x" * MIB)
        started = time.monotonic()
        try:
            status, headers, body = _read_response(sock)
        except TimeoutError:
            pytest.fail(
                f"no answer within {ANSWER_WITHIN_S:.0f}s to an anonymous upload with an "
                "unfinished body: nginx is buffering the body instead of streaming it to the API"
            )
    assert status == 401, body[:500]
    assert headers["content-type"].startswith("application/json")
    assert "error" in json.loads(body)
    assert time.monotonic() - started < ANSWER_WITHIN_S


def test_an_anonymous_large_upload_gets_401_not_413_or_a_timeout(stack: Stack) -> None:
    body = b"source,source_id,title\n" + b"y" * (40 * MIB)
    assert len(body) < _max_feed_bytes()
    with stack.client() as client:
        response = client.post("/api/v1/ingest", content=body, headers={"Content-Type": "text/csv"})
    assert response.status_code == 401, response.text[:500]
    assert "error" in response.json()


def test_a_content_length_above_the_feed_limit_gets_413_json(stack: Stack, api_key: str) -> None:
    """nginx refuses on the declared length alone, before anything reaches the API."""
    limit = _max_feed_bytes()
    with _connect(stack) as sock:
        sock.sendall(_upload_head(stack, limit + 1, key=api_key))
        sock.sendall(b"source,source_id,title\n")
        try:
            status, headers, body = _read_response(sock)
        except TimeoutError:
            pytest.fail(f"no answer within {ANSWER_WITHIN_S:.0f}s to an over-limit Content-Length")
    assert status == 413, body[:500]
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)
    assert error["error"] == "payload_too_large"
    assert str(limit) in error["message"]
    assert error["request_id"] == headers["x-request-id"]


def test_concurrent_uploads_per_client_are_capped_with_429_json(stack: Stack, api_key: str) -> None:
    """Uploads still sending their body hold a slot each; one too many is refused at once."""
    held: list[ssl.SSLSocket] = []
    try:
        status, headers, body = 0, {}, b""
        # The cap is NGINX_INGEST_CONNECTIONS (4 by default); stop at the first refusal.
        for _ in range(12):
            sock = _connect(stack)
            held.append(sock)
            sock.sendall(_upload_head(stack, 8 * MIB, key=api_key))
            sock.sendall(b"source,source_id,title\n")
            sock.settimeout(1.0)
            try:
                status, headers, body = _read_response(sock)
            except TimeoutError:
                continue  # still uploading: it holds its slot
            break
        assert status == 429, f"{len(held)} unfinished uploads at once were never refused"
        assert 2 <= len(held) <= 9, f"refused at upload {len(held)}"
        assert headers["content-type"].startswith("application/json")
        error = json.loads(body)
        assert error["error"] == "rate_limited"
        assert "concurrent uploads" in error["message"]
        assert int(headers["retry-after"]) >= 1
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()

    # Closing the unfinished uploads frees their slots.
    with stack.client() as client:
        response = wait_for(
            lambda: client.post(
                "/api/v1/ingest", content=b"source\n", headers={"Content-Type": "text/csv"}
            ),
            until=lambda response: response.status_code != 429,
            what="an upload slot free again",
            timeout=15,
        )
    assert response.status_code == 401, response.text


def _burst(stack: Stack, path: str, count: int, workers: int) -> list[httpx.Response]:
    with stack.client() as client, ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda _: client.get(path), range(count)))


def _until_limited(stack: Stack, path: str) -> tuple[list[httpx.Response], httpx.Response]:
    """Bursts of 60 GETs (at most 3) until one answer is 429."""
    responses: list[httpx.Response] = []
    for _ in range(3):
        responses += _burst(stack, path, 60, 12)
        limited = [r for r in responses if r.status_code == 429]
        if limited:
            return responses, limited[0]
    pytest.fail(f"{len(responses)} GET {path} in bursts were never rate limited")


def _recovers(stack: Stack, path: str, within_s: float = 15) -> httpx.Response:
    """Poll `path` as Retry-After says until it answers 200 again.

    Then wait a few seconds more, so the client's allowance is whole again for the next tests:
    the first 200 only means the burst allowance is back to its very edge.
    """
    deadline = time.monotonic() + within_s
    with stack.client() as client:
        while True:
            response = client.get(path)
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(float(response.headers.get("retry-after", "1")))
    # Time is what is tested here: the allowance refills at the configured rate.
    time.sleep(4)
    return response


def test_a_burst_on_the_viewer_gets_429_html_with_retry_after(stack: Stack) -> None:
    responses, limited = _until_limited(stack, "/")
    assert {r.status_code for r in responses} <= {200, 429}
    assert any(r.status_code == 200 for r in responses)
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["content-type"].startswith("text/html")
    assert "Too many requests" in limited.text
    assert "default-src" in limited.headers["content-security-policy"]
    # The allowance comes back: the viewer answers again once the client slows down.
    assert _recovers(stack, "/").status_code == 200


def test_a_burst_on_ready_gets_429_json_and_health_locations_are_never_limited(
    stack: Stack,
) -> None:
    responses, limited = _until_limited(stack, "/ready")
    assert {r.status_code for r in responses} <= {200, 429}
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"] == "rate_limited"
    # While /ready is throttled, the container healthcheck's location and liveness still answer.
    health = _burst(stack, "/nginx-health", 40, 8) + _burst(stack, "/health", 40, 8)
    assert {r.status_code for r in health} == {200}
    with httpx.Client(base_url=stack.http_url) as plain:
        assert plain.get("/nginx-health").status_code == 200
    assert _recovers(stack, "/ready").status_code == 200


def test_docker_waits_longer_than_the_api_drains_before_killing_it(stack: Stack) -> None:
    client = docker.from_env()
    apis = client.containers.list(
        filters={
            "label": [f"com.docker.compose.project={PROJECT}", "com.docker.compose.service=api"]
        }
    )
    assert apis
    for container in apis:
        env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
        graceful = int(env.get("LISTINGS_GRACEFUL_TIMEOUT", "30"))
        stop_timeout = container.attrs["Config"].get("StopTimeout") or 10
        assert stop_timeout >= graceful + 10, (
            f"{container.name}: SIGKILL after {stop_timeout}s races a {graceful}s drain"
        )


def test_docker_waits_longer_than_nginx_proxies_an_upload_before_killing_it(stack: Stack) -> None:
    templates = "".join(p.read_text() for p in (ROOT / "nginx" / "templates").iterdir())
    longest = max(int(s) for s in re.findall(r"proxy_(?:read|send)_timeout (\d+)s;", templates))
    client = docker.from_env()
    edges = client.containers.list(
        filters={
            "label": [f"com.docker.compose.project={PROJECT}", "com.docker.compose.service=nginx"]
        }
    )
    assert edges
    for container in edges:
        stop_timeout = container.attrs["Config"].get("StopTimeout") or 10
        assert stop_timeout > longest, (
            f"{container.name}: SIGKILL after {stop_timeout}s cuts a {longest}s proxied upload"
        )

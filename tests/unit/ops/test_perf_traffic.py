"""ops.perf.traffic against a local HTTP server that answers the first request of each
connection and closes the connection when a second one arrives on it, without answering (the
race an nginx reload makes: an idle kept-alive connection closed as the client sends on it). A
client that never retries counts those requests as lost, by kind; one that retries re-sends
them."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from ops.perf.traffic import KEPT_ALIVE, NEW_CONNECTION, Tally, Traffic

pytestmark = pytest.mark.unit


class Closing(http.server.BaseHTTPRequestHandler):
    """One answer per connection (keep-alive advertised); the next request on it is dropped."""

    protocol_version = "HTTP/1.1"
    answered = False

    def do_GET(self) -> None:
        if self.answered:
            self.close_connection = True  # closed with the request unanswered
            return
        self.answered = True
        body = b'{"version": "v1"}' if self.path == "/api/v1/version" else b"[]"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Closing)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def run(url: str, retry: bool) -> Traffic:
    traffic = Traffic(url, verify=False, rate=40.0, threads=2, retry=retry)
    with traffic:
        deadline = time.monotonic() + 10
        while traffic.tally.by_kind.get(KEPT_ALIVE, 0) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
    return traffic


def test_a_client_that_never_retries_counts_the_requests_its_connection_lost(
    server: str,
) -> None:
    tally = run(server, retry=False).tally
    assert tally.by_kind[KEPT_ALIVE] >= 8 and tally.by_kind[NEW_CONNECTION] > 0
    lost = tally.failed(KEPT_ALIVE)
    assert lost > 0 and tally.retried == 0
    assert tally.failed(NEW_CONNECTION) == 0  # a connection per request never meets the race
    assert f"{KEPT_ALIVE} {tally.by_kind[KEPT_ALIVE]} requests {lost} failed p99 " in (
        tally.summary()
    )
    assert 0 < tally.p99(NEW_CONNECTION) < 10 and tally.p99("no such kind") == 0.0


def test_a_client_that_retries_re_sends_and_loses_nothing(server: str) -> None:
    tally = run(server, retry=True).tally
    assert tally.failures == [] and tally.retried > 0


@pytest.mark.parametrize(
    ("answers", "changes"),
    [
        # One switch, answers in order.
        ([(0.0, 0.1, "v1"), (0.2, 0.3, "v2"), (0.4, 0.5, "v2")], ["v1", "v2"]),
        # A slow v1 request sent before anyone saw v2, answered after: in flight, no switch back.
        ([(0.0, 0.1, "v1"), (0.5, 0.9, "v1"), (0.6, 0.7, "v2"), (0.8, 0.85, "v2")], ["v1", "v2"]),
        # A new connection's handshake made a v2 answer's request look sent first: the same.
        ([(1.0, 1.6, "v2"), (1.1, 1.2, "v1"), (1.7, 1.8, "v2")], ["v1", "v2"]),
        # v1 answered a request sent after a client had seen v2: a real switch back.
        ([(0.0, 0.1, "v1"), (0.2, 0.3, "v2"), (0.4, 0.5, "v1"), (0.6, 0.7, "v2")],
         ["v1", "v2", "v1", "v2"]),
        # A rollback, then the deploy again: two switches, each counted.
        ([(0, 1, "v2"), (2, 3, "v1"), (4, 5, "v1"), (6, 7, "v2")], ["v2", "v1", "v2"]),
    ],
)  # fmt: skip
def test_version_changes_count_only_what_a_client_could_tell_apart(
    answers: list[tuple[float, float, str]], changes: list[str]
) -> None:
    assert Tally(versions=answers).version_changes() == changes

"""The e2e feed writer (tests/support/feed_writers.py) against a small stand-in of the ingest
API: what it counts as accepted, refused, stored and not stored."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from support.feed_writers import ROWS, FeedWriters

pytestmark = pytest.mark.unit


class Ingest(BaseHTTPRequestHandler):
    """Accepts every other feed; job n is done with ROWS rows, except job 2 (one row short)."""

    posts: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Ingest.posts.append(body)
        number = len(Ingest.posts)
        if number % 2 == 0:
            self._answer(503, {"error": "queue unavailable"})
        else:
            self._answer(202, {"job_id": f"job-{number}", "status": "queued"})

    def do_GET(self) -> None:
        job = self.path.rsplit("/", 1)[-1]
        accepted = ROWS - 1 if job == "job-3" else ROWS
        self._answer(200, {"job_id": job, "status": "done", "accepted": accepted})

    def _answer(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Ingest)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    Ingest.posts = []
    yield httpd.server_address[1]
    httpd.shutdown()


def test_the_writer_counts_refusals_and_proves_each_accepted_feed_stored(server: int) -> None:
    with FeedWriters(f"http://127.0.0.1:{server}", False, "slw_key", interval=0.05) as writers:
        deadline = time.monotonic() + 10
        while len(Ingest.posts) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert len(writers.accepted) + len(writers.refused) == len(Ingest.posts) >= 4
    assert writers.refused and all(r.startswith("HTTP 503") for r in writers.refused)
    assert writers.accepted[:2] == ["job-1", "job-3"]
    assert Ingest.posts[0].startswith(b"source,source_id,")  # a CSV feed
    problems = writers.not_stored(timeout=5)
    assert problems == [f"job-3: done with {ROWS - 1} rows"]

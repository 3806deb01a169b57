"""The watch after the switch (ops/deploy/watch.py): the queries it sends Prometheus, how it
reads the answers, and how it judges the new release's share of 5xx."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from ops.deploy import watch
from ops.errors import OpsError

pytestmark = pytest.mark.unit

RELEASE = "20261207T051654Z-v2"
SWITCH = 1_800_000_000.0


class Counts:
    """Prometheus as the watch sees it: the release's counters over time (a fake clock)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.t = SWITCH + 2.0  # the steps after the switch took 2 s
        self.at_switch = (100.0, 1.0)  # a replica reused from a standby counted before
        self.rate = (20.0, 0.0)  # requests and 5xx per second after the switch
        self.asked: list[tuple[str, float | None]] = []
        monkeypatch.setattr(watch, "now", lambda: self.t)
        monkeypatch.setattr(watch, "pause", self.pause)

    def pause(self, seconds: float) -> None:
        self.t += seconds

    def ask(self, promql: str, at: float | None) -> float:
        self.asked.append((promql, at))
        when = self.t if at is None else at
        index = 1 if 'status=~"5.."' in promql else 0
        return self.at_switch[index] + self.rate[index] * max(0.0, when - SWITCH)


def run(counts: Counts, percent: float = 5, minimum: int = 20, seconds: float = 30) -> str:
    return watch.Watch(
        counts.ask, RELEASE, SWITCH, seconds, percent, minimum, log=lambda _: None
    ).run()


def test_a_healthy_release_is_watched_until_the_window_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counts = Counts(monkeypatch)
    counts.rate = (20.0, 0.5)  # 2.5 % of 5xx: within 5 %
    note = run(counts)
    assert counts.t == SWITCH + 30  # the steps after the switch counted towards the 30 s
    assert note == (
        "600 request(s) in 30s after the switch, 15 answered 5xx (2.5%), within "
        "deploy.watch_error_percent (5%)"
    )
    # The baseline is asked at the switch, the rest now.
    assert [at for _, at in counts.asked[:2]] == [SWITCH, SWITCH]
    assert all(at is None for _, at in counts.asked[2:])


def test_too_many_errors_fail_at_once_naming_the_ratio(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = Counts(monkeypatch)
    counts.rate = (20.0, 4.0)  # 20 %
    with pytest.raises(
        OpsError,
        match=r"answered 8 of 40 requests with 5xx since the switch "
        r"\(20.0%, above deploy.watch_error_percent 5%\)",
    ):
        run(counts)
    assert counts.t == SWITCH + 2  # judged at the first reading: no waiting


def test_too_few_requests_are_not_judged(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = Counts(monkeypatch)
    counts.rate = (0.2, 0.2)  # every request failed, but 6 of them
    note = run(counts, minimum=20)
    assert note.endswith("fewer than deploy.watch_min_requests (20), not judged")
    assert note.startswith("6 request(s) in 30s after the switch, 6 answered 5xx (100.0%)")


def test_a_replica_restarting_never_counts_below_zero() -> None:
    assert watch.Count(5, 1).since(watch.Count(10, 3)) == watch.Count(0, 0)


def test_the_queries_join_the_requests_to_the_release_and_leave_out_probes() -> None:
    promql = watch.requests_of(RELEASE, errors=True)
    assert promql == (
        'sum(listings_http_requests_total{job="api",route!~"/health|/ready|/metrics",'
        'status=~"5.."} * on(instance) group_left() max by (instance) '
        f'(listings_build_info{{job="api",release="{RELEASE}"}}))'
    )
    assert 'status=~"5.."' not in watch.requests_of(RELEASE)
    with pytest.raises(OpsError, match="cannot go into a query"):
        watch.requests_of('x"} or vector(1) #')


class _Prometheus(BaseHTTPRequestHandler):
    answers: ClassVar[list[bytes]] = []
    seen: ClassVar[list[dict[str, list[str]]]] = []

    def do_GET(self) -> None:
        self.seen.append(parse_qs(urlsplit(self.path).query))
        body = self.answers.pop(0)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def prometheus() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_answers_are_read_over_http_and_an_empty_one_is_zero(prometheus: str) -> None:
    def answer(result: list[object]) -> bytes:
        return json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        ).encode()

    _Prometheus.answers[:] = [answer([{"metric": {}, "value": [SWITCH, "42"]}]), answer([]), b"{}"]
    _Prometheus.seen.clear()
    ask = watch.asker(prometheus)
    assert ask("sum(up)", SWITCH) == 42.0
    assert ask("sum(up)", None) == 0.0
    with pytest.raises(watch.Unanswered, match="without a result"):
        ask("sum(up)", None)
    assert _Prometheus.seen[0] == {"query": ["sum(up)"], "time": [f"{SWITCH:.3f}"]}
    assert "time" not in _Prometheus.seen[1]


def test_a_prometheus_that_does_not_answer_is_unanswered_not_a_failed_release() -> None:
    ask = watch.asker("http://127.0.0.1:9", timeout=1.0)
    with pytest.raises(watch.Unanswered, match="did not answer"):
        ask("sum(up)", None)

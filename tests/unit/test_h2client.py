"""The HTTP/2 test client's bookkeeping (tests/support/h2client.py): curl's output read into
requests, failures and the versions each connection saw, in order."""

from __future__ import annotations

import pytest

from ops.perf.h2client import H2Tally, Http2Traffic

pytestmark = pytest.mark.unit


def answer(version: str, status: int = 200, protocol: str = "2", connects: int = 0) -> str:
    return f'{{"version": "{version}"}}#={status} {protocol} {connects}=#'


def test_curl_output_is_read_per_answer_and_per_connection() -> None:
    traffic = Http2Traffic("https://app.example.org:8443", None, "127.0.0.1:8443")
    traffic._record(answer("v1", connects=1) + answer("v1") + answer("v2"), "", 0)
    traffic._record(
        answer("v2", connects=1) + answer("", 502) + answer("v2", protocol="1.1"), "", 0
    )
    tally = traffic.tally
    assert tally.requests == 6 and tally.connections == 2
    assert tally.failures == [
        '502 over HTTP/2: {"version": ""}',
        '200 over HTTP/1.1: {"version": "v2"}',
    ]
    assert tally.sequences == [["v1", "v2"], ["v2"]]
    assert (
        "--connect-to" in traffic.argv() and "app.example.org:8443:127.0.0.1:8443" in traffic.argv()
    )


def test_a_curl_that_died_is_a_failure_unless_stopped_by_us() -> None:
    traffic = Http2Traffic("https://a.example", None)
    traffic._record("", "curl: (16) Error in the HTTP2 framing layer", 16)
    assert traffic.tally.failures == ["curl exited 16: curl: (16) Error in the HTTP2 framing layer"]


@pytest.mark.parametrize(
    ("sequences", "expected", "ok"),
    [
        ([["v1", "v2"], ["v1"], ["v2"]], ["v1", "v2"], True),
        ([["v1", "v2", "v1"]], ["v1", "v2"], False),  # alternated on one connection
        ([["v2", "v1"]], ["v1", "v2"], False),  # went back
        ([["v1"]], ["v1", "v2"], False),  # never saw v2
        ([["v1"], [], ["v1"]], ["v1"], True),
    ],
)
def test_versions_are_in_order_only_when_no_connection_went_back(
    sequences: list[list[str]], expected: list[str], ok: bool
) -> None:
    assert H2Tally(sequences=sequences).in_order(expected) is ok

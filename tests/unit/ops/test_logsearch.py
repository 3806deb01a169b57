"""Searching the central logs: input checks, filters, time order, file selection, routing."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from ops_testdata import LOCAL_YAML, STAGING_YAML, WriteEnv
from support import collector_host

from ops.errors import OpsError
from ops.monitoring import logsearch
from ops.monitoring.logsearch import Entry, LogFile, Query
from ops.stack import host as hostops
from ops.stack import logs as stack

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


# The e2e stack's lines: the project whose containers the search sees here.
collected = functools.partial(collector_host.collected, project="slipway-e2e")


def run_search(lines: list[str], **query: object) -> list[str]:
    return list(logsearch.search(lines, Query(**query)))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- --since


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", NOW - timedelta(seconds=30)),
        ("10m", NOW - timedelta(minutes=10)),
        ("2h", NOW - timedelta(hours=2)),
        ("1d", NOW - timedelta(days=1)),
        ("1w", NOW - timedelta(weeks=1)),
        ("2026-11-25T12:00:00Z", datetime(2026, 11, 25, 12, tzinfo=UTC)),
        ("2026-11-25T13:00:00+01:00", datetime(2026, 11, 25, 12, tzinfo=UTC)),
        ("2026-11-25T12:00:00.250000Z", datetime(2026, 11, 25, 12, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_since_accepts_durations_and_times_with_an_offset(text: str, expected: datetime) -> None:
    assert logsearch.parse_since(text, NOW) == expected


@pytest.mark.parametrize(
    "text", ["10", "10 minutes", "-5m", "0m", "5y", "yesterday", "2026-13-01Z"]
)
def test_since_rejects_what_is_not_a_duration_or_a_time(text: str) -> None:
    with pytest.raises(OpsError, match=r"--since .* neither a duration nor an ISO 8601.*Fix"):
        logsearch.parse_since(text, NOW)


def test_since_rejects_a_time_without_offset_and_shows_how_to_add_one() -> None:
    with pytest.raises(OpsError, match=r"no UTC offset.*2026-11-25T12:00:00Z"):
        logsearch.parse_since("2026-11-25T12:00:00", NOW)


def test_since_for_docker_compose_logs_turns_days_and_weeks_into_hours() -> None:
    assert logsearch.docker_since("1d", NOW) == "24h"
    assert logsearch.docker_since("2w", NOW) == "336h"
    assert logsearch.docker_since("10m", NOW) == "10m"
    assert logsearch.docker_since("2026-11-25T12:00:00Z", NOW) == "2026-11-25T12:00:00Z"
    with pytest.raises(OpsError):
        logsearch.docker_since("soon", NOW)


# ---------------------------------------------------------------------------- other input


def test_a_bad_regular_expression_is_named_with_the_fix() -> None:
    with pytest.raises(OpsError) as err:
        logsearch.compile_grep("upstream (timed out")
    message = str(err.value)
    assert "'upstream (timed out' is not a valid regular expression" in message
    assert "missing ), unterminated subpattern at position 9" in message
    assert r"'upstream \(timed out'" in message


def test_request_ids_are_what_nginx_keeps() -> None:
    assert logsearch.check_request_id("e2e-trace.01:ab") == "e2e-trace.01:ab"
    for bad in ["", "has space", 'quote"', "x" * 129]:
        with pytest.raises(OpsError, match="is not a request id"):
            logsearch.check_request_id(bad)


def test_an_unknown_service_lists_the_known_ones() -> None:
    assert logsearch.check_service("api", ["worker", "api"]) == "api"
    with pytest.raises(OpsError, match=r"unknown service 'apii'\. Fix: use one of api, worker"):
        logsearch.check_service("apii", ["worker", "api"])


# ---------------------------------------------------------------------------- parsing lines


def test_a_collected_line_keeps_the_service_line_exactly() -> None:
    raw = collected("2026-11-30T11:59:00.123456Z", "api", {"message": "tab\there", "n": 1})
    entry = logsearch.parse_entry(raw)
    assert entry == Entry(
        ts=datetime(2026, 11, 30, 11, 59, 0, 123456, tzinfo=UTC),
        ts_text="2026-11-30T11:59:00.123456Z",
        service="api",
        container="slipway-e2e-api-1",
        line='{"message":"tab\\there","n":1}',
    )
    assert json.loads(entry.line) == {"message": "tab\there", "n": 1}


def test_rsyslog_escaped_slashes_and_offsets_are_read() -> None:
    raw = r'{"ts":"2026-11-30T12:59:00.000001+01:00","service":"nginx","container":"c",'
    raw += r'"host":"h","line":"{\"uri\":\"\/api\/v1\"}"}'
    entry = logsearch.parse_entry(raw)
    assert entry is not None
    assert entry.ts == datetime(2026, 11, 30, 11, 59, 0, 1, tzinfo=UTC)
    assert entry.line == '{"uri":"/api/v1"}'


@pytest.mark.parametrize(
    "raw",
    [
        '0000Z","service":"api","line":"half a line"}',  # the end of a line cut by a deletion
        "[1, 2]",
        '{"service":"api","line":"no time"}',
        '{"ts":"yesterday","line":"x"}',
        '{"ts":"2026-11-30T11:59:00Z","line":3}',
    ],
)
def test_what_is_not_a_collected_line_is_skipped(raw: str) -> None:
    assert logsearch.parse_entry(raw) is None


def test_the_request_id_is_read_from_json_lines_only() -> None:
    assert logsearch.request_id_of('{"request_id":"abc","message":"m"}') == "abc"
    assert logsearch.request_id_of('{"request_id":null}') is None
    assert logsearch.request_id_of('{"request_id":12}') is None
    assert logsearch.request_id_of("request_id=abc") is None
    assert logsearch.request_id_of("{not json") is None


# ---------------------------------------------------------------------------- filters


LINES = [
    collected("2026-11-30T11:00:00.000001Z", "nginx", {"request_id": "r-1", "uri": "/api"}),
    collected("2026-11-30T11:00:00.000002Z", "api", {"request_id": "r-1", "message": "queued"}),
    collected("2026-11-30T11:00:00.500000Z", "worker", {"request_id": "r-1", "message": "done"}),
    collected("2026-11-30T11:00:01.000000Z", "api", {"request_id": "r-2", "message": "GET"}),
    collected("2026-11-30T11:30:00.000000Z", "postgres", "LOG:  checkpoint starting: time"),
    collected("2026-11-30T11:45:00.000000Z", "worker", {"request_id": None, "message": "idle"}),
]


def test_a_request_id_finds_its_lines_from_every_service_in_time_order() -> None:
    found = run_search(LINES, request_id="r-1")
    assert [line.split(" ", 2)[1] for line in found] == ["nginx", "api", "worker"]
    assert found[0] == '2026-11-30T11:00:00.000001Z nginx {"request_id":"r-1","uri":"/api"}'


def test_a_request_id_only_matches_the_field_not_any_mention() -> None:
    mention = collected("2026-11-30T11:00:02Z", "api", {"request_id": "r-3", "note": "after r-1"})
    assert run_search([*LINES, mention], request_id="r-1") == run_search(LINES, request_id="r-1")
    assert run_search(LINES, request_id="r-") == []


def test_service_since_and_grep_combine() -> None:
    assert len(run_search(LINES, service="api")) == 2
    since = datetime(2026, 11, 30, 11, 0, 1, tzinfo=UTC)
    assert [s.split(" ", 2)[1] for s in run_search(LINES, since=since)] == [
        "api",
        "postgres",
        "worker",
    ]
    assert len(run_search(LINES, grep=logsearch.compile_grep("checkpoint|idle"))) == 2
    assert run_search(LINES, service="worker", grep=logsearch.compile_grep("idle"), since=since)
    assert not run_search(LINES, service="api", grep=logsearch.compile_grep("idle"))


def test_grep_searches_the_line_not_the_service_name() -> None:
    assert run_search(LINES, grep=logsearch.compile_grep("postgres")) == []


def test_tail_keeps_the_newest_lines() -> None:
    found = run_search(LINES, tail=2)
    assert [line.split(" ", 2)[1] for line in found] == ["postgres", "worker"]


def test_the_default_tail_is_200_unless_the_search_is_filtered() -> None:
    assert logsearch.tail_for(-1, Query()) == logsearch.DEFAULT_TAIL == 200
    assert logsearch.tail_for(-1, Query(service="api")) == 200
    assert logsearch.tail_for(-1, Query(request_id="r-1")) == 0
    assert logsearch.tail_for(-1, Query(since=NOW)) == 0
    assert logsearch.tail_for(50, Query(request_id="r-1")) == 50
    assert logsearch.tail_for(0, Query()) == 0


def test_lines_that_arrived_out_of_order_come_out_in_time_order() -> None:
    base = datetime(2026, 11, 30, 11, 0, tzinfo=UTC)
    order = [0, 2, 1, 3, 5, 4, 6]
    entries = [Entry(base + timedelta(milliseconds=i), f"t{i}", "api", "c", str(i)) for i in order]
    assert [e.line for e in logsearch.in_time_order(entries)] == [str(i) for i in range(7)]


def test_equal_times_keep_their_arrival_order() -> None:
    base = datetime(2026, 11, 30, 11, 0, tzinfo=UTC)
    entries = [Entry(base, "t", "api", "c", name) for name in ["b", "a", "c"]]
    assert [e.line for e in logsearch.in_time_order(entries)] == ["b", "a", "c"]


def test_ordering_streams_instead_of_holding_everything() -> None:
    base = datetime(2026, 11, 30, 11, 0, tzinfo=UTC)
    pulled: list[int] = []

    def produce() -> Iterator[Entry]:
        for i in range(100):
            pulled.append(i)
            yield Entry(base + timedelta(seconds=i), "t", "api", "c", str(i))

    ordered = logsearch.in_time_order(produce(), window=timedelta(seconds=10))
    assert next(ordered).line == "0"
    assert len(pulled) == 11  # the first entry came out once one 10 s newer arrived


# ---------------------------------------------------------------------------- files


LISTING = (
    "slipway-20261128T100000.000000Z.log.gz\t100\t1795860000\n"
    "slipway-20261129T100000.000000Z.log.gz\t100\t1795946400\n"
    "slipway-20261130T113000.123456Z.log\t100\t1796031000\n"
    "current.log\t50\t1796034000\n"
)


def test_the_listing_gives_each_rotated_file_its_rotation_time() -> None:
    files = logsearch.parse_listing(LISTING + "garbage\nother.txt\t1\t2\n")
    assert [f.name for f in files] == [
        "slipway-20261128T100000.000000Z.log.gz",
        "slipway-20261129T100000.000000Z.log.gz",
        "slipway-20261130T113000.123456Z.log",
        "current.log",
    ]
    assert files[2].rotated_at == datetime(2026, 11, 30, 11, 30, 0, 123456, tzinfo=UTC)
    assert files[3] == LogFile("current.log", 50, None)


def test_since_skips_only_the_files_rotated_before_it() -> None:
    files = logsearch.parse_listing(LISTING)
    every = [f.name for f in files]
    assert logsearch.select_files(files, None) == every
    day = datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert logsearch.select_files(files, day) == every[2:]
    # A line stamped just before a rotation may be written just after it: one minute of slack.
    just_after = datetime(2026, 11, 30, 11, 30, 30, tzinfo=UTC)
    assert logsearch.select_files(files, just_after) == every[2:]
    later = datetime(2026, 11, 30, 11, 45, tzinfo=UTC)
    assert logsearch.select_files(files, later) == ["current.log"]


def test_prefilters_are_fixed_strings_every_match_contains() -> None:
    assert logsearch.prefilters(Query()) == []
    query = Query(service="worker", request_id="r-1", grep=logsearch.compile_grep("job finished"))
    assert logsearch.prefilters(query) == ["r-1", '"service":"worker"', "job finished"]
    # A pattern with regular-expression syntax, quotes or slashes is checked only in Python.
    for pattern in ["job.finished", "a|b", '"status":500', "/api/v1"]:
        assert logsearch.prefilters(Query(grep=logsearch.compile_grep(pattern))) == []


def test_every_prefilter_holds_for_the_lines_the_search_keeps() -> None:
    query = Query(service="api", request_id="r-1", grep=logsearch.compile_grep("queued"))
    kept = [raw for raw in LINES if run_search([raw], **query.__dict__)]
    assert kept
    for raw in kept:
        assert all(fixed in raw for fixed in logsearch.prefilters(query))


# ---------------------------------------------------------------------------- `invoke logs`


def test_on_a_host_without_the_collector_since_is_checked_and_days_become_hours(
    write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env("staging", STAGING_YAML + "monitoring: {enabled: false}\n")
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(hostops, "logs", lambda env, **kwargs: calls.append(kwargs))
    stack.logs("staging", service="api", since="1d")
    assert calls == [{"service": "api", "follow": False, "since": "24h", "tail": 200}]
    with pytest.raises(OpsError, match="--since"):
        stack.logs("staging", since="a while")


def test_a_search_without_the_collector_says_how_to_get_it(write_env: WriteEnv) -> None:
    write_env("local", LOCAL_YAML + "monitoring: {enabled: false}\n")
    with pytest.raises(OpsError, match=r"does not run the central log collector.*monitoring"):
        stack.logs("local", grep="error")


def test_bad_input_fails_before_docker_is_touched(
    write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env("local", LOCAL_YAML)
    monkeypatch.setattr(stack, "open_stack", lambda *a, **k: pytest.fail("docker touched"))
    for kwargs, message in [
        ({"since": "10 minutes"}, "--since"),
        ({"grep": "("}, "not a valid regular expression"),
        ({"request_id": "a b"}, "not a request id"),
        ({"request_id": "r-1", "follow": True}, "--follow streams new lines"),
    ]:
        with pytest.raises(OpsError, match=message):
            stack.logs("local", **kwargs)  # type: ignore[arg-type]


def test_the_newest_lines_are_read_from_as_few_files_as_needed() -> None:
    files = {
        "slipway-20261130T090000.000000Z.log.gz": [
            collected(f"2026-11-30T08:{m:02d}:00.000000Z", "api", f"old {m}") for m in range(50)
        ],
        "slipway-20261130T100000.000000Z.log.gz": [
            collected(f"2026-11-30T09:{m:02d}:00.000000Z", "api", f"mid {m}") for m in range(50)
        ],
        "current.log": [
            collected(f"2026-11-30T10:{m:02d}:00.000000Z", "api", f"new {m}") for m in range(5)
        ],
    }
    reads: list[list[str]] = []

    class FakeCollector:
        def list_files(self) -> list[LogFile]:
            raise AssertionError("newest is given the names")

        @contextmanager
        def read_lines(self, names: Sequence[str], fixed: Sequence[str]) -> Iterator[Iterator[str]]:
            reads.append(list(names))
            yield iter([line for name in names for line in files[name]])

    collector = FakeCollector()
    names = list(files)
    assert logsearch.newest(collector, names, Query(tail=3)) == [
        f"2026-11-30T10:0{m}:00.000000Z api new {m}" for m in (2, 3, 4)
    ]
    assert reads == [["current.log"]]
    reads.clear()
    found = logsearch.newest(collector, names, Query(tail=20))
    assert [line.rsplit(" ", 2)[1:] for line in found][:2] == [["mid", "35"], ["mid", "36"]]
    assert reads == [["current.log"], names[1:]]
    reads.clear()
    assert len(logsearch.newest(collector, names, Query(tail=1000))) == 105
    assert reads == [["current.log"], names[1:], names]

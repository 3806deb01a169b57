"""Search an environment's central logs: what the `logs` collector (monitoring/logs) wrote.

The collector writes one JSON object per line, `{"ts", "service", "container", "host", "line"}`,
into rotated (and gzipped) files whose names are their rotation time, then `current.log`
(docs: monitoring/logs/common.sh). `invoke logs` reads them through `slipway-logs-read` in the
running container, streaming: the files a `--since` cannot concern are skipped, `grep -F`
prefilters inside the container, then the functions here filter exactly, put the lines in time
order and format them as `<ts> <service> <line>`.

A `Collector` is where that container runs (ops/monitoring/collectors.py: this machine's
engine, a host over SSH, every host of a swarm); the search is the same for all, and pure.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ops import compose
from ops.errors import OpsError

# The compose service of the collector (compose/logging.yaml).
COLLECTOR_SERVICE = compose.LOG_SERVICE
READER = "slipway-logs-read"
# Lines arrive nearly in time order (Docker stamps each line when it sends it); this much
# disorder is repaired while streaming.
ORDER_WINDOW = timedelta(seconds=10)
# A rotated file holds lines up to its rotation time (its name); this much slack covers a line
# stamped just before the rotation and written just after.
ROTATION_SLACK = timedelta(minutes=1)
# Without a filter, this many of the newest lines (like `docker compose logs --tail 200`).
DEFAULT_TAIL = 200

_DURATION_RE = re.compile(r"^([1-9][0-9]*)([smhdw])$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# As nginx keeps an incoming X-Request-ID (nginx/nginx.conf), or one it generated (32 hex).
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# A --grep made only of these has no regular expression syntax and reads the same in the
# collector's escaped JSON: safe to prefilter with grep -F inside the container.
_LITERAL_RE = re.compile(r"^[A-Za-z0-9 _:,;=@#%&<>!~-]+$")
# Characters with a meaning in a regular expression.
_SPECIAL_RE = re.compile(r"[.^$*+?{}\[\]\\|()]")
_ROTATED_RE = re.compile(r"^slipway-(\d{8}T\d{6}\.\d{6})Z\.log(\.gz)?$")
CURRENT = "current.log"


@dataclass(frozen=True)
class Entry:
    """One collected line."""

    ts: datetime
    ts_text: str
    service: str
    container: str
    line: str


@dataclass(frozen=True)
class Query:
    """What to keep. Empty fields keep everything."""

    service: str = ""
    since: datetime | None = None
    grep: re.Pattern[str] | None = None
    request_id: str = ""
    # The newest `tail` lines only; 0: every line.
    tail: int = 0

    @property
    def filtered(self) -> bool:
        """Whether the query selects lines by content or time (then every match is wanted)."""
        return bool(self.since or self.grep or self.request_id)


@dataclass(frozen=True)
class LogFile:
    """A file of the collector: `slipway-logs-read list` output."""

    name: str
    size: int
    # Upper bound of the lines' times: the rotation time (None for current.log).
    rotated_at: datetime | None


# ---------------------------------------------------------------------------- parsing input


def parse_since(text: str, now: datetime) -> datetime:
    """`30s`, `10m`, `2h`, `1d`, `1w` before now, or an ISO 8601 time with its offset."""
    value = text.strip()
    match = _DURATION_RE.match(value)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return now - timedelta(**{_DURATION_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise OpsError(
            f"--since {text!r} is neither a duration nor an ISO 8601 time. Fix: write a "
            "duration like 30s, 10m, 2h, 1d or 1w, or a time with its offset like "
            "2026-11-25T12:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise OpsError(
            f"--since {text!r} has no UTC offset, so it could mean any time zone. Fix: add one, "
            f"e.g. {value}Z (UTC) or {value}+01:00"
        )
    return moment


def docker_since(text: str, now: datetime) -> str:
    """The --since value for `docker compose logs` (validated; days and weeks in hours)."""
    moment = parse_since(text, now)
    match = _DURATION_RE.match(text.strip())
    if match and match.group(2) in "dw":
        hours = int((now - moment).total_seconds()) // 3600
        return f"{hours}h"
    return text.strip()


def compile_grep(text: str) -> re.Pattern[str]:
    """A --grep: a regular expression (Python syntax) searched anywhere in the line."""
    try:
        return re.compile(text)
    except re.error as exc:
        position = f" at position {exc.pos}" if exc.pos is not None else ""
        escaped = _SPECIAL_RE.sub(lambda m: "\\" + m.group(0), text)
        raise OpsError(
            f"--grep {text!r} is not a valid regular expression ({exc.msg}{position}). Fix: "
            "put a backslash before each special character to search for the text as is "
            f"(e.g. '{escaped}')"
        ) from None


def check_request_id(text: str) -> str:
    """A --request-id: what nginx accepts as X-Request-ID or generates."""
    if not _REQUEST_ID_RE.match(text):
        raise OpsError(
            f"--request-id {text!r} is not a request id. Fix: copy it from the X-Request-ID "
            "response header or a log line (letters, digits, . _ : -, at most 128)"
        )
    return text


def check_service(service: str, known: Iterable[str]) -> str:
    """A --service must be one of the stack's compose services."""
    names = sorted(known)
    if service not in names:
        raise OpsError(
            f"unknown service {service!r}. Fix: use one of {', '.join(names)} (compose "
            "service names, not container names)"
        )
    return service


def parse_entry(raw: str) -> Entry | None:
    """A collector line as an Entry; None for a line that is not one (cut by a deletion)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    ts_text, line = data.get("ts"), data.get("line")
    if not isinstance(ts_text, str) or not isinstance(line, str):
        return None
    try:
        ts = datetime.fromisoformat(ts_text)
    except ValueError:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return Entry(
        ts=ts,
        ts_text=ts_text,
        service=str(data.get("service") or ""),
        container=str(data.get("container") or ""),
        line=line,
    )


def request_id_of(line: str) -> str | None:
    """The `request_id` field of a JSON log line (nginx's access log, the API, the worker)."""
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    value = data.get("request_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def parse_listing(text: str) -> list[LogFile]:
    """`slipway-logs-read list` output (NAME, BYTES, MTIME per line, tab-separated)."""
    files = []
    for row in text.splitlines():
        parts = row.split("\t")
        if len(parts) < 2 or not parts[1].isdigit():
            continue
        name = parts[0]
        match = _ROTATED_RE.match(name)
        if match:
            stamp = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S.%f").replace(tzinfo=UTC)
            files.append(LogFile(name, int(parts[1]), stamp))
        elif name == CURRENT:
            files.append(LogFile(name, int(parts[1]), None))
    return files


# ---------------------------------------------------------------------------- the search


def select_files(files: Sequence[LogFile], since: datetime | None) -> list[str]:
    """The files that can hold lines at or after `since`, in reading order.

    Only a leading run of files is skipped: the rest is read as one stream, so a line rsyslog
    split across two files is joined again.
    """
    if since is None:
        return [f.name for f in files]
    first = 0
    for index, item in enumerate(files):
        if item.rotated_at is not None and item.rotated_at < since - ROTATION_SLACK:
            first = index + 1
        else:
            break
    return [f.name for f in files[first:]]


def prefilters(query: Query) -> list[str]:
    """Fixed strings every wanted line contains as the collector wrote it (grep -F, in the
    container): a cheap first pass, `matches` decides."""
    fixed = []
    if query.request_id:
        fixed.append(query.request_id)
    if query.service:
        fixed.append(f'"service":"{query.service}"')
    if query.grep is not None and _LITERAL_RE.match(query.grep.pattern):
        fixed.append(query.grep.pattern)
    return fixed


def matches(entry: Entry, query: Query) -> bool:
    """Whether the entry passes every filter of the query."""
    if query.service and entry.service != query.service:
        return False
    if query.since is not None and entry.ts < query.since:
        return False
    if query.grep is not None and not query.grep.search(entry.line):
        return False
    return not query.request_id or request_id_of(entry.line) == query.request_id


def in_time_order(entries: Iterable[Entry], window: timedelta = ORDER_WINDOW) -> Iterator[Entry]:
    """The entries by time, streaming: an entry is held until one `window` newer has arrived.

    Equal times keep their arrival order. Only an entry that arrives more than `window` after
    a newer one can come out of order.
    """
    held: list[tuple[datetime, int, Entry]] = []
    newest: datetime | None = None
    for number, entry in enumerate(entries):
        heapq.heappush(held, (entry.ts, number, entry))
        if newest is None or entry.ts > newest:
            newest = entry.ts
        while held and held[0][0] <= newest - window:
            yield heapq.heappop(held)[2]
    while held:
        yield heapq.heappop(held)[2]


def format_entry(entry: Entry) -> str:
    """`<ts> <service> <line>`."""
    return f"{entry.ts_text} {entry.service or '-'} {entry.line}"


def search_entries(raw_lines: Iterable[str], query: Query) -> Iterator[Entry]:
    """The matching entries of the collector's raw lines, in time order (the newest
    `query.tail` only, when set)."""
    parsed = (parse_entry(raw) for raw in raw_lines)
    wanted = (e for e in parsed if e is not None and matches(e, query))
    ordered = in_time_order(wanted)
    if query.tail > 0:
        yield from deque(ordered, maxlen=query.tail)
    else:
        yield from ordered


def search(raw_lines: Iterable[str], query: Query) -> Iterator[str]:
    """The formatted matching lines of the collector's raw lines, in time order."""
    return (format_entry(e) for e in search_entries(raw_lines, query))


def merged(streams: Iterable[Iterable[Entry]], tail: int = 0) -> Iterator[Entry]:
    """Several streams in time order (one per host) as one in time order, streaming; equal
    times keep the streams' order. tail > 0: the newest `tail` of them all."""
    ordered = heapq.merge(*streams, key=lambda entry: entry.ts)
    if tail > 0:
        yield from deque(ordered, maxlen=tail)
    else:
        yield from ordered


# ---------------------------------------------------------------------------- the collector


class Collector(Protocol):
    """A running collector's files, wherever it runs."""

    def list_files(self) -> list[LogFile]:
        """The collector's files, oldest first."""
        ...

    def read_lines(
        self, names: Sequence[str], fixed: Sequence[str]
    ) -> AbstractContextManager[Iterator[str]]:
        """The raw lines of the named files (prefiltered by `fixed`), streamed; leaving the block
        early stops the reader."""
        ...


def tail_for(tail: int, query: Query) -> int:
    """The tail a search uses: `--tail N` as given (0: every line); unset (negative): every
    match of a filtered query, else the newest DEFAULT_TAIL."""
    if tail >= 0:
        return tail
    return 0 if query.filtered else DEFAULT_TAIL


def newest_entries(collector: Collector, names: Sequence[str], query: Query) -> list[Entry]:
    """The last `query.tail` matches, reading only as many of the newest files as that takes
    (1, 2, 4, ... of them): `invoke logs --service api` need not read 30 days of history."""
    count = 1
    while True:
        with collector.read_lines(names[-count:], prefilters(query)) as raw:
            found = list(search_entries(raw, query))
        if len(found) >= query.tail or count >= len(names):
            return found
        count *= 2


def newest(collector: Collector, names: Sequence[str], query: Query) -> list[str]:
    """newest_entries, formatted."""
    return [format_entry(e) for e in newest_entries(collector, names, query)]


def print_all(entries: Iterable[Entry]) -> int:
    """Print the entries on stdout; how many were printed (up to a reader that went away)."""
    printed = 0
    try:
        for entry in entries:
            print(format_entry(entry))
            printed += 1
        sys.stdout.flush()
    except BrokenPipeError:
        # Whoever reads our output (`| head`) has gone: not an error. Python would report the
        # pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return printed


def print_search(collector: Collector, query: Query) -> int:
    """Search the collector and print the matches on stdout; how many were printed."""
    names = select_files(collector.list_files(), query.since)
    if not names:
        return 0
    if query.tail > 0:
        return print_all(newest_entries(collector, names, query))
    with collector.read_lines(names, prefilters(query)) as raw:
        return print_all(search_entries(raw, query))

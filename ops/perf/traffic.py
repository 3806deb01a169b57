"""Steady read traffic against an environment, recording every answer: the proof that a deploy,
a rollback or a killed replica cost no request.

A few threads each send GETs at a fixed pace (search, a listing's page, the viewer, the
version) through the public URL, half over kept-alive connections, half over a new connection
per request; with `retry=False` a kept-alive client never re-sends a request its connection lost
(the unkind client). Every failure (a non-2xx answer or a connection error) is kept with its
time and client kind; every /api/v1/version answer is kept so a test can check that the version
switched exactly once. Bounded in rate and duration:
test traffic goes to loopback only, never elsewhere.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from ops import health

# (path, share of requests): mostly API reads, a little viewer, the version endpoint often
# enough to see the switch.
MIX: tuple[tuple[str, int], ...] = (
    ("/api/v1/listings?limit=5", 4),
    ("/api/v1/listings?city=Lyon&limit=5", 2),
    ("/api/v1/version", 3),
    ("/?city=Paris", 1),
)
MAX_RATE = 400.0
MAX_SECONDS = 900.0


KEPT_ALIVE = "kept-alive"
NEW_CONNECTION = "new connection"


@dataclass(frozen=True)
class Failure:
    at: float
    path: str
    problem: str
    kind: str = ""


@dataclass
class Tally:
    """What the traffic saw."""

    requests: int = 0
    # GETs re-sent once because the server closed an idle keep-alive connection as they left
    retried: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)  # requests per client kind
    seconds: dict[str, list[float]] = field(default_factory=dict)  # latencies per client kind
    failures: list[Failure] = field(default_factory=list)
    # (sent, answered, version) of each /api/v1/version answer, in seconds since the start.
    versions: list[tuple[float, float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def version_changes(self) -> list[str]:
        """The versions clients saw, each change once, in order (v1, v2 = one switch).

        A request says which version served it at some moment between its sending and its
        answer; requests in flight together say nothing about their order. So the answers are
        taken as they arrived, and an answer of the version before the current one counts as
        a change back only if its request was sent after a client had already been answered by
        the current one (a request sent before that was simply in flight across the switch).
        """
        seen: list[str] = []
        seen_since = 0.0  # when the current version was first answered
        for sent, answered, version in sorted(self.versions, key=lambda v: v[1]):
            if seen and version == seen[-1]:
                continue
            if len(seen) >= 2 and version == seen[-2] and sent < seen_since:
                continue  # in flight when the switch happened: not a switch back
            seen.append(version)
            seen_since = answered
        return seen

    def failed(self, kind: str) -> int:
        return sum(1 for f in self.failures if f.kind == kind)

    def p99(self, kind: str) -> float:
        """The 99th percentile of the latencies of `kind`'s requests, failed ones too (s)."""
        ordered = sorted(self.seconds.get(kind, []))
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0

    def per_kind(self) -> str:
        """`kept-alive 120 requests 0 failed p99 41ms, new connection 118 requests ...`."""
        return ", ".join(
            f"{kind} {count} requests {self.failed(kind)} failed p99 {self.p99(kind) * 1000:.0f}ms"
            for kind, count in sorted(self.by_kind.items())
        )

    def summary(self) -> str:
        rate = ""
        if self.versions:
            span = max(v[1] for v in self.versions) - min(v[0] for v in self.versions)
            rate = f" over {span:.0f}s" if span else ""
        changes = self.version_changes()
        shown = " -> ".join(changes[:6]) + (
            f" ... ({len(changes)} in all)" if len(changes) > 6 else ""
        )
        return (
            f"{self.requests} requests{rate}, {len(self.failures)} failed ({self.per_kind()}), "
            f"versions seen: {shown}"
        )


class Traffic:
    """Background readers; use as a context manager around the operation under test."""

    def __init__(
        self,
        base_url: str,
        verify: str | bool | ssl.SSLContext,
        rate: float = 24.0,
        threads: int = 4,
        mix: Sequence[tuple[str, int]] = MIX,
        max_seconds: float = MAX_SECONDS,
        connect_to: str = "",
        retry: bool = True,
    ) -> None:
        if rate <= 0 or rate > MAX_RATE:
            raise ValueError(f"rate must be in (0, {MAX_RATE}] requests/s")
        loopback = ("https://localhost", "https://127.0.0.1", "http://127.0.0.1")
        if connect_to:
            if not connect_to.startswith(("127.0.0.1:", "localhost:")):
                raise ValueError("test traffic goes to loopback only (connect_to)")
        elif not base_url.startswith(loopback):
            raise ValueError("test traffic goes to loopback only")
        self.base_url = base_url.rstrip("/")
        self.connect_to = connect_to
        self.retry = retry
        self.verify = verify
        self.threads = threads
        self.interval = threads / rate
        self.paths = [p for p, share in mix for _ in range(share)]
        self.max_seconds = max_seconds
        self.tally = Tally()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self.started = 0.0
        self.stopped = 0.0

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.started = time.monotonic()
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, args=(index,), daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self) -> Tally:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)
        self.stopped = time.monotonic()
        return self.tally

    @property
    def rate(self) -> float:
        seconds = (self.stopped or time.monotonic()) - self.started
        return self.tally.requests / seconds if seconds > 0 else 0.0

    def _run(self, index: int) -> None:
        # Half the threads keep connections alive (like browsers), half open one per request
        # (like scripts): a deploy must not break either.
        keep_alive = index % 2 == 0
        # httpx re-sends nothing by itself (it only drops a pooled connection it finds closed
        # before use): a request lost on its connection is a failure unless `retry`.
        client = httpx.Client(verify=self.verify, timeout=15.0) if keep_alive else None
        position = index
        deadline = self.started + self.max_seconds
        next_at = time.monotonic() + index * self.interval / self.threads
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                next_at += self.interval
                path = self.paths[position % len(self.paths)]
                position += 1
                self._one(client, path)
        finally:
            if client is not None:
                client.close()

    def _get(self, client: httpx.Client | None, path: str) -> tuple[httpx.Response, bool]:
        """GET base_url + `path`; (response, retried).

        A kept-alive HTTP/1.1 connection can be closed by the server (an nginx reload closes
        its idle ones) just as the client sends on it. For an idempotent request the client may
        then retry it on a new connection (RFC 9112, 9.3.1), as browsers do; this client does so
        once and counts it, unless built with retry=False. Connections opened per request never
        meet this race.
        """
        if client is None:
            with httpx.Client(verify=self.verify, timeout=15.0) as once:
                return health.public_get(once, self.base_url, path, self.connect_to), False
        try:
            return health.public_get(client, self.base_url, path, self.connect_to), False
        except httpx.RemoteProtocolError as exc:
            if not self.retry or "without sending a response" not in str(exc):
                raise
            return health.public_get(client, self.base_url, path, self.connect_to), True

    def _one(self, client: httpx.Client | None, path: str) -> None:
        at = time.monotonic()
        problem = ""
        version = None
        retried = False
        try:
            response, retried = self._get(client, path)
            if not 200 <= response.status_code < 300:
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
            elif path == "/api/v1/version":
                version = str(response.json().get("version"))
        except (httpx.HTTPError, ValueError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        kind = NEW_CONNECTION if client is None else KEPT_ALIVE
        took = time.monotonic() - at
        with self.tally.lock:
            self.tally.requests += 1
            self.tally.by_kind[kind] = self.tally.by_kind.get(kind, 0) + 1
            self.tally.seconds.setdefault(kind, []).append(took)
            self.tally.retried += int(retried)
            if problem:
                self.tally.failures.append(Failure(at - self.started, path, problem, kind))
            if version is not None:
                self.tally.versions.append((at - self.started, at + took - self.started, version))

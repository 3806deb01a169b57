"""Kept-alive HTTP/2 clients that never retry, for benchmarks and tests under load: curl
processes, each sending a batch of requests over one HTTP/2 connection (curl reuses it for all
its URLs and never re-sends a request a connection lost), one after the other, at a bounded
rate.

Python here has no HTTP/2 client (no h2 package): curl's is the one these machines have.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ANSWER = re.compile(r"(.*?)#=(\d{3}) (\S+) (\d+)=#", re.DOTALL)


@dataclass
class H2Tally:
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    protocols: Counter[str] = field(default_factory=Counter)
    # Per curl run (one connection, its requests in order): each change of the version answered.
    sequences: list[list[str]] = field(default_factory=list)
    connections: int = 0

    def in_order(self, expected: list[str]) -> bool:
        """No run saw the versions alternate or go back: each run's changes follow
        `expected`, and together they saw every one of them."""
        seen = {version for run in self.sequences for version in run}
        for run in self.sequences:
            if not run:
                continue
            if run[0] not in expected:
                return False
            start = expected.index(run[0])
            if run != expected[start : start + len(run)]:
                return False
        return seen == set(expected)

    def summary(self) -> str:
        return (
            f"HTTP/2 kept-alive {self.requests} requests {len(self.failures)} failed over "
            f"{self.connections} connection(s), protocols {dict(self.protocols)}"
        )


class Http2Traffic:
    """`threads` curl loops on `path` of `base_url` (GET), `batch` requests per connection,
    `rate` requests per second per loop."""

    def __init__(
        self,
        base_url: str,
        cafile: Path | None,
        connect_to: str = "",
        path: str = "/api/v1/version",
        threads: int = 2,
        batch: int = 200,
        rate: int = 10,
    ) -> None:
        self.url = base_url.rstrip("/") + path
        self.cafile = cafile
        self.connect_to = connect_to
        self.threads = threads
        self.batch = batch
        self.rate = rate
        self.tally = H2Tally()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._procs: list[subprocess.Popen[str]] = []

    def argv(self) -> list[str]:
        host = self.url.split("/")[2]
        name, _, port = host.partition(":")
        extra = (
            ["--connect-to", f"{name}:{port or 443}:{self.connect_to}"] if self.connect_to else []
        )
        ca = ["--cacert", str(self.cafile)] if self.cafile else []
        return [
            "curl", "--http2", "-s", "--no-progress-meter", "--rate", f"{self.rate}/s",
            *ca, *extra, "-w", "#=%{http_code} %{http_version} %{num_connects}=#",
            *([self.url] * self.batch),
        ]  # fmt: skip

    def _loop(self) -> None:
        while not self._stop.is_set():
            proc = subprocess.Popen(  # noqa: S603  # nosec B603 - a fixed argv of our own
                self.argv(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            with self._lock:
                self._procs.append(proc)
            out, err = proc.communicate()
            self._record(out, err, proc.returncode)

    def _record(self, out: str, err: str, code: int) -> None:
        answers = ANSWER.findall(out)
        changes: list[str] = []
        with self._lock:
            self.tally.sequences.append(changes)
            for body, status, protocol, connects in answers:
                self.tally.requests += 1
                self.tally.protocols[protocol] += 1
                self.tally.connections += int(connects)
                if not status.startswith("2") or protocol != "2":
                    self.tally.failures.append(f"{status} over HTTP/{protocol}: {body[:120]}")
                    continue
                try:
                    version = str(json.loads(body).get("version"))
                except ValueError:
                    version = "?"
                if not changes or changes[-1] != version:
                    changes.append(version)
            # Stopped by us (SIGTERM) at the end: not a failure of the server.
            if code not in (0, -15) and not self._stop.is_set():
                self.tally.failures.append(f"curl exited {code}: {err.strip()[-200:]}")

    def __enter__(self) -> Http2Traffic:
        for _ in range(self.threads):
            worker = threading.Thread(target=self._loop, daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for worker in self._workers:
            worker.join(timeout=30)

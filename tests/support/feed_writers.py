"""A writer that POSTs small CSV feeds through nginx while an operation runs, then proves that
every feed the API accepted (202) was stored: its job done with all its rows accepted.

Each feed has its own source id range, so its rows are new listings; one connection per
request (a writer that never re-sends: a failed POST is a failure).
"""

from __future__ import annotations

import ssl
import threading
import time

import httpx

from ops import health
from ops.perf import feeds

ROWS = 5


class FeedWriters:
    """POST a feed of ROWS rows every `interval` seconds with `key`, in a thread."""

    def __init__(
        self,
        base_url: str,
        verify: ssl.SSLContext | bool,
        key: str,
        connect_to: str = "",
        interval: float = 0.5,
        source: str = "e2e-writer",
    ) -> None:
        self.base_url = base_url
        self.verify = verify
        self.key = key
        self.connect_to = connect_to
        self.interval = interval
        self.source = source
        self.accepted: list[str] = []  # job ids answered 202
        self.refused: list[str] = []  # any other answer, or no answer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._serial = 0

    def __enter__(self) -> FeedWriters:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._serial += 1
            body = feeds.to_csv(feeds.rows(ROWS, source=self.source, seed=self._serial))
            try:
                with httpx.Client(verify=self.verify, timeout=30.0) as client:
                    answer = health.public_request(
                        client, "POST", self.base_url, "/api/v1/ingest", self.connect_to,
                        headers={"Authorization": f"Bearer {self.key}", "Content-Type": "text/csv"},
                        content=body,
                    )  # fmt: skip
                if answer.status_code == 202:
                    self.accepted.append(str(answer.json()["job_id"]))
                else:
                    self.refused.append(f"HTTP {answer.status_code}: {answer.text[:200]}")
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                self.refused.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.interval)

    def not_stored(self, timeout: float = 180.0) -> list[str]:
        """Each accepted job that did not end `done` with all its rows accepted ([] when every
        one did), waiting up to `timeout` for those still queued or running."""
        deadline = time.monotonic() + timeout
        pending = list(self.accepted)
        problems: list[str] = []
        with httpx.Client(verify=self.verify, timeout=30.0) as client:
            while pending:
                for job in list(pending):
                    answer = health.public_request(
                        client, "GET", self.base_url, f"/api/v1/ingest/{job}", self.connect_to,
                        headers={"Authorization": f"Bearer {self.key}"},
                    )  # fmt: skip
                    state = answer.json() if answer.status_code == 200 else {}
                    if state.get("status") == "done":
                        pending.remove(job)
                        if state.get("accepted") != ROWS:
                            problems.append(f"{job}: done with {state.get('accepted')} rows")
                    elif state.get("status") == "failed" or answer.status_code != 200:
                        pending.remove(job)
                        problems.append(f"{job}: {answer.status_code} {answer.text[:200]}")
                if pending and time.monotonic() > deadline:
                    return problems + [f"{job}: not done after {timeout:.0f}s" for job in pending]
                if pending:
                    time.sleep(1.0)
        return problems

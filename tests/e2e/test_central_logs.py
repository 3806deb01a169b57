"""Central logs on the e2e stack: every service sends its lines to the collector (compose
service `logs`), and `invoke logs` searches them across services, in time order: a request is
followed by its id from nginx's access log to the API's log to the worker's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from stack_names import ENV_NAME
from support.waiting import wait_for

from ops.perf import feeds

if TYPE_CHECKING:
    from conftest import Stack

pytestmark = pytest.mark.e2e

ENV = f"--env={ENV_NAME}"
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Found:
    ts: datetime
    service: str
    line: str

    @property
    def data(self) -> dict[str, object]:
        parsed = json.loads(self.line)
        assert isinstance(parsed, dict)
        return parsed


def search(stack: Stack, *args: str) -> list[Found]:
    """`invoke logs --env=<e2e> ARGS`: its stdout holds only `<ts> <service> <line>` lines."""
    result = stack.invoke("logs", ENV, *args)
    found = []
    for row in result.stdout.splitlines():
        ts, service, line = row.split(" ", 2)
        found.append(Found(datetime.fromisoformat(ts), service, line))
    return found


def search_until(
    stack: Stack, check: Callable[[list[Found]], bool], *args: str, timeout: float = 60
) -> list[Found]:
    """Search again until `check(found)` holds (lines reach the collector within a second or
    so; the worker may still be finishing the job)."""
    return wait_for(
        lambda: search(stack, *args),
        until=check,
        what=f"`invoke logs {' '.join(args)}` finding the lines",
        timeout=timeout,
        interval=1,
    )


def _queue_feed(stack: Stack, api_key: str, request_id: str, rows: int = 200) -> dict[str, object]:
    source = f"e2e-logs-{uuid.uuid4().hex[:8]}"
    body = feeds.to_csv(feeds.rows(rows, source=source, seed=3))
    headers = {
        "Authorization": f"Bearer {api_key}",
        "Content-Type": "text/csv",
        "X-Request-ID": request_id,
    }
    with stack.client() as client:
        queued = client.post("/api/v1/ingest", content=body, headers=headers)
        assert queued.status_code == 202, queued.text
        assert queued.headers["x-request-id"] == request_id
    job: dict[str, object] = stack.ingest_job(queued.json()["job_id"], api_key)
    assert job["status"] == "done", job
    return job


def test_a_request_is_followed_by_its_id_from_nginx_to_the_api_to_the_worker(
    stack: Stack, api_key: str
) -> None:
    request_id = f"e2e-trace-{uuid.uuid4().hex}"
    _queue_feed(stack, api_key, request_id)

    def complete(found: list[Found]) -> bool:
        return {"nginx", "api", "worker"} <= {f.service for f in found}

    found = search_until(stack, complete, f"--request-id={request_id}")
    print("\n" + "\n".join(f"{f.ts.isoformat()} {f.service} {f.line[:160]}" for f in found))
    assert complete(found), [f.service for f in found]
    assert [f.ts for f in found] == sorted(f.ts for f in found), "not in time order"
    assert all(f.data["request_id"] == request_id for f in found)
    edge = [f.data for f in found if f.service == "nginx"]
    assert any(d["uri"] == "/api/v1/ingest" and d["status"] == 202 for d in edge), edge
    assert {f.service for f in found} <= {"nginx", "api", "worker"}


def test_service_grep_and_since_narrow_the_search(stack: Stack) -> None:
    marker = f"m{uuid.uuid4().hex[:10]}"
    before = datetime.now(UTC) - timedelta(seconds=1)
    with stack.client() as client:
        listed = client.get("/api/v1/listings", params={"q": marker})
        assert listed.status_code == 200, listed.text

    def seen(found: list[Found]) -> bool:
        return bool(found)

    edge = search_until(stack, seen, "--service=nginx", f"--grep={marker}")
    assert edge and all(f.service == "nginx" and marker in f.line for f in edge)
    assert all(f.data["uri"].startswith("/api/v1/listings?") for f in edge)  # type: ignore[union-attr]

    # A regular expression; --since as a duration or as a time with its offset.
    pattern = f'q={marker}[&"]'
    assert search(stack, "--service=nginx", f"--grep={pattern}", "--since=10m") == edge
    assert search(stack, f"--grep={marker}", f"--since={before.isoformat()}") == edge
    # A time after the lines (they are all found above): none is newer.
    after = max(f.ts for f in edge) + timedelta(milliseconds=1)
    assert search(stack, f"--grep={marker}", f"--since={after.isoformat()}") == []
    # --tail keeps the newest lines of a search.
    newest = search(stack, "--service=nginx", "--tail=3")
    assert len(newest) == 3 and [f.ts for f in newest] == sorted(f.ts for f in newest)


def test_every_service_of_the_stack_reaches_the_collector(stack: Stack) -> None:
    for service in ("postgres", "redis", "migrate", "api", "worker", "nginx", "prometheus"):
        found = search(stack, f"--service={service}", "--tail=1")
        assert found and found[0].service == service, f"no line of {service} collected"


def test_bad_input_exits_non_zero_naming_the_problem_and_the_fix(stack: Stack) -> None:
    for args, message in [
        (["--service=apii"], "unknown service 'apii'. Fix: use one of"),
        (["--since=a while"], "--since 'a while' is neither a duration nor an ISO 8601 time"),
        (["--grep=(unclosed"], "is not a valid regular expression"),
        (["--request-id=not an id"], "is not a request id"),
    ]:
        result = stack.invoke("logs", ENV, *args, check=False)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert message in result.stderr and "Fix:" in result.stderr, result.stderr


def test_follow_still_streams_through_docker_compose_logs(stack: Stack) -> None:
    """`docker logs` keeps working with the syslog driver (Docker's dual logging): --follow,
    and whatever reads containers' output, are unchanged."""
    marker = f"f{uuid.uuid4().hex[:10]}"
    argv = [sys.executable, "-m", "invoke", "logs", ENV, "--service=nginx", "--tail=1", "--follow"]
    # Its own process group: killing it must also end the `docker compose logs` it runs.
    follower = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen: list[str] = []
    try:
        assert follower.stdout is not None
        # invoke echoes `$ docker compose ... --follow`; the newest line (--tail=1), prefixed
        # "nginx-1  | ", comes once compose follows.
        for line in follower.stdout:
            seen.append(line)
            if " | " in line:
                break
        with stack.client() as client:
            client.get("/api/v1/listings", params={"q": marker})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = follower.stdout.readline()
            seen.append(line)
            if marker in line:
                break
    finally:
        os.killpg(follower.pid, signal.SIGKILL)
        follower.wait()
    assert any(marker in line for line in seen), "".join(seen[-20:])

    # The collector's own messages are not in the central logs: `docker compose logs` shows them.
    shown = stack.invoke("logs", ENV, "--service=logs", "--tail=50")
    assert "logs entrypoint: udp 127.0.0.1:" in shown.stdout

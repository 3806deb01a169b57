"""The requests every release must answer (ops/deploy/checks.py): the script the replicas run,
run here for real against a small HTTP server; the command that runs it in every replica at
once, run by sh with a stand-in `docker`; and how its output is judged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from ops.deploy import checks

pytestmark = pytest.mark.unit


class Listings(BaseHTTPRequestHandler):
    """A search that returns one listing, its detail, a slow page and a failing one."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Listings.seen.append(self.path)
        if self.path.startswith("/api/v1/listings?"):
            self._answer(200, json.dumps({"items": [{"id": "L 1/2"}], "next_cursor": None}))
        elif self.path == "/api/v1/listings/L%201%2F2":
            self._answer(200, "{}")
        elif self.path == "/slow":
            time.sleep(1.5)
            self._answer(200, "late")
        elif self.path == "/empty":
            self._answer(200, json.dumps({"items": []}))
        else:
            self._answer(500, "boom")

    def _answer(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Listings)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Listings.seen = []
    yield httpd.server_address[1]
    httpd.shutdown()


def run_script(
    port: int, paths: list[str], latency: float = 1.0
) -> subprocess.CompletedProcess[str]:
    script = checks.SCRIPT.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    return subprocess.run(
        [sys.executable, "-c", script, json.dumps(paths), str(latency)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_script_follows_a_search_to_its_first_listing_and_passes(server: int) -> None:
    done = run_script(server, ["/api/v1/listings?limit=5", "/api/v1/listings/{listing}"])
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ok /api/v1/listings?limit=5 200 ")
    assert lines[1].startswith("ok /api/v1/listings/L%201%2F2 200 ")  # the id, quoted


def test_the_script_fails_on_a_bad_status_or_a_slow_answer_and_says_which(server: int) -> None:
    done = run_script(server, ["/broken", "/slow", "/"], latency=1.0)
    assert done.returncode == 1
    assert [line.split()[:3] for line in done.stdout.splitlines()] == [
        ["FAIL", "/broken", "500"],
        ["FAIL", "/slow", "200"],  # answered, but after the limit
        ["FAIL", "/", "500"],
    ]


def test_a_listing_check_without_any_listing_is_skipped_not_failed(server: int) -> None:
    done = run_script(server, ["/empty", "/api/v1/listings/{listing}"])
    assert done.returncode == 0
    assert done.stdout.splitlines()[1] == "skip /api/v1/listings/{listing} no listing to ask for"
    assert Listings.seen == ["/empty"]


FAKE_DOCKER = """#!/bin/sh
# docker exec <name> python -c <script> <paths> <latency>: a replica named bad-* fails.
case "$2" in
  bad-*) echo "FAIL /api/v1/listings?limit=5 500 3ms"; exit 1 ;;
  *) echo "ok /api/v1/listings?limit=5 200 3ms"; echo "ok / 200 2ms" ;;
esac
"""


def test_every_replica_runs_the_checks_at_once_and_each_verdict_is_its_own(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    names = ["api-1", "bad-2", "api-3"]
    command = checks.in_replicas(names, ["/api/v1/listings?limit=5", "/"], 5.0)
    assert not command.changes
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["sh", "-c", command.line], env=env, capture_output=True, text=True, check=True
    )
    assert checks.failures(done.stdout, names) == {
        "bad-2": ["FAIL /api/v1/listings?limit=5 500 3ms"]
    }
    assert done.stdout.count(checks.MARK) == 3


def test_a_replica_the_output_does_not_mention_failed() -> None:
    output = f"{checks.MARK} api-1 0\nok / 200 3ms\n"
    assert checks.failures(output, ["api-1"]) == {}
    missing = checks.failures(output, ["api-1", "api-2"])
    assert list(missing) == ["api-2"] and "no answer from the checks" in missing["api-2"][0]
    assert "no answer" in checks.failures("", ["api-1"])["api-1"][0]
    # A script that died without a FAIL line is named by its last lines (or its exit code).
    died = f"{checks.MARK} api-1 137\n"
    assert checks.failures(died, ["api-1"]) == {"api-1": ["exit 137"]}


PROBE_DOCKER = """#!/bin/sh
# inspect: ready-* and slow-* run, gone-* does not exist, dead-* exited; exec: slow fails.
case "$1" in
  inspect) case "$4" in gone-*) exit 1 ;; dead-*) echo exited ;; *) echo running ;; esac ;;
  exec) case "$2" in slow-*) printf 'not ready:\\nschema behind\\n'; exit 3 ;; *) echo ok ;; esac ;;
esac
"""


def test_containers_are_probed_at_once_each_with_its_own_verdict(tmp_path: Path) -> None:
    from ops.deploy.rollout import Containers
    from ops.executor import Result

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(PROBE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    class Shell:
        """An executor running commands with sh here."""

        def run(self, command: object, check: bool = True, stdin: str | None = None) -> Result:
            line = command.line  # type: ignore[attr-defined]
            done = subprocess.run(["sh", "-c", line], env=env, capture_output=True, text=True)
            return Result(line, done.returncode, done.stdout, done.stderr)

    names = ["ready-1", "slow-2", "dead-3", "gone-4"]
    verdicts = Containers(Shell(), "p").probe_all(names, ["listings", "healthcheck", "ready"])  # type: ignore[arg-type]
    assert verdicts == {
        "ready-1": (True, "ok"),
        "slow-2": (False, "not ready: schema behind"),
        "dead-3": (False, "container is exited"),
        "gone-4": (False, "container is gone"),
    }

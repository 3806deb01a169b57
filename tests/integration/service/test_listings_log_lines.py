"""Log lines of the real processes: JSON only, with service and request id, no personal data.

Issue 4: "Every service logs JSON lines to stdout with timestamp, level, service, message and the
request id"; docs/architecture.md: contact fields are never in the logs.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
import pytest
from free_port import free_port
from support.waiting import wait_for_async

pytestmark = pytest.mark.integration

REQUIRED = ("timestamp", "level", "service", "message", "request_id")
CONTACTS = {
    "contact_name": "Jeanne Logtest",
    "contact_email": "jeanne.logtest@agency.example",
    "contact_phone": "+33 6 98 76 54 32",
}
WAIT_S = 60.0


def json_lines(raw: str, service: str) -> list[dict[str, Any]]:
    """Every line parsed; fails naming the first line that is not a complete JSON entry."""
    entries = []
    for line in raw.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n{raw}") from None
        assert isinstance(entry, dict), line
        assert all(key in entry for key in REQUIRED), line
        assert entry["service"] == service, line
        assert entry["timestamp"].endswith("Z") and "T" in entry["timestamp"], line
        entries.append(entry)
    return entries


def assert_no_personal_data(raw: str) -> None:
    for value in CONTACTS.values():
        assert value not in raw
        assert json.dumps(value)[1:-1] not in raw


class Lines(logging.Handler):
    """The API's lines, formatted by the formatter create_app configured (the test's app runs
    in this process)."""

    def __init__(self) -> None:
        super().__init__()
        root_handlers = logging.getLogger().handlers
        assert root_handlers, "create_app configures the root logger"
        self.setFormatter(root_handlers[0].formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def test_an_ingest_is_followed_by_its_request_id_from_api_to_worker_without_contacts(
    ingest: Any,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    request_id = f"req-logs-{secrets.token_hex(4)}"
    base = {"source": "logs", "title": "Loft", "kind": "house", "price": 250_000, "city": "Nantes"}
    rows = [{**base, "source_id": f"l{i}", **CONTACTS} for i in range(3)]
    rows.append({**base, "source_id": "bad", **CONTACTS, "contact_email": "jeanne AT agency"})
    api_lines = Lines()
    logging.getLogger().addHandler(api_lines)
    try:
        response = await client.post(
            "/api/v1/ingest",
            content=ingest.csv(rows),
            headers={**auth, "Content-Type": "text/csv", "X-Request-ID": request_id},
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        worker = start_worker()
        job = await ingest.wait(job_id)
    finally:
        logging.getLogger().removeHandler(api_lines)
    assert (job["status"], job["accepted"], job["rejected"]) == ("done", 3, 1)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    worker_raw = worker.stdout.read().decode() if worker.stdout else ""

    api = json_lines("\n".join(api_lines.lines), "api")
    worker_entries = json_lines(worker_raw, "worker")
    queued = [e for e in api if e["message"] == "ingest job queued"]
    assert [(e["request_id"], e["job_id"]) for e in queued] == [(request_id, job_id)]
    done = [e for e in worker_entries if e["message"] == "job done"]
    assert [(e["request_id"], e["job_id"]) for e in done] == [(request_id, job_id)]
    assert {e["message"] for e in worker_entries} >= {"worker starting", "worker stopped"}
    assert_no_personal_data("\n".join(api_lines.lines))
    assert_no_personal_data(worker_raw)


async def test_gunicorn_and_uvicorn_write_only_json_lines_for_the_api(tmp_path: Path) -> None:
    """The real `listings api` (gunicorn master, uvicorn workers): boot, requests, shutdown."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTINGS_")}
    env.update(
        LISTINGS_ENV="test",
        LISTINGS_WEB_CONCURRENCY="1",
        LISTINGS_DATABASE_URL=f"postgresql+asyncpg://listings:x@127.0.0.1:{free_port()}/listings",
        LISTINGS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        # gunicorn applies these after the config file (see test_listings_shutdown.py).
        GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{port}",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
    )
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "listings", "api"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            async def healthy() -> bool:
                assert proc.poll() is None, log_path.read_text()
                return (await http.get("/health")).status_code == 200

            await wait_for_async(
                healthy,
                what="the API answering /health",
                timeout=WAIT_S,
                interval=0.1,
                ignoring=(httpx.TransportError,),
                details=log_path.read_text,
            )
            assert (await http.get("/no/such/page")).status_code == 404
            listing = {"title": "t", **CONTACTS}
            failed = await http.post(
                "/api/v1/listings", json=listing, headers={"Authorization": "Bearer slw_x"}
            )
            assert failed.status_code == 500  # the database is unreachable
            metrics = (await http.get("/metrics")).text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    raw = log_path.read_text()
    entries = json_lines(raw, "api")
    messages = [e["message"] for e in entries]
    for expected in ("Starting gunicorn", "Booting worker", "Application startup complete"):
        assert any(m.startswith(expected) for m in messages), raw
    assert "Shutting down: Master" in messages, raw
    errors = [e for e in entries if e["message"] == "unhandled error"]
    assert len(errors) == 1 and errors[0]["request_id"], raw
    assert_no_personal_data(raw)
    # The worker's backlog gauges are not the API's business (nor its zeros).
    assert "listings_http_requests_total" in metrics
    assert "listings_ingest_stream_length" not in metrics

"""SIGTERM on the real processes: `listings api` (gunicorn master + uvicorn workers) and the worker.

Issue 2: "SIGTERM: the API stops accepting, finishes in-flight requests, exits; the worker
finishes and acks its current batch, then exits."

The API runs through its real entry point, `python -m listings api`, which execs gunicorn with
`-c python:listings.gunicorn_conf`. That config hard-codes `bind = "0.0.0.0:8000"` and neither a
LISTINGS_* setting nor a CLI option of `listings api` changes it. gunicorn reads extra options from
the GUNICORN_CMD_ARGS environment variable and applies them after the config file, so the tests
pass `--bind 127.0.0.1:<free port>` there. PROMETHEUS_MULTIPROC_DIR points into the test's tmp
dir, because `listings api` wipes that directory at start.

No assertion is about elapsed time: deadlines only bound the waits, and every "while it is still
in flight" claim is made deterministic by holding the request body until the test has seen what
it wants to see.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
import pytest
from free_port import free_port
from listings.ingest.queue import StreamNames
from listings.settings import Settings
from redis.asyncio import Redis
from service_helpers import job_row, settings_env, wait_until_partly_written
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from support.waiting import wait_for_async

pytestmark = pytest.mark.integration

API_WORKERS = 2
# gunicorn SIGKILLs workers still busy after this long; far above any wait below, so a request
# held by the test is never cut short by the master.
GRACEFUL_TIMEOUT_S = 120
WAIT_S = 60.0  # generous deadline for each wait on this noisy machine (never an assertion)
IN_FLIGHT = re.compile(r"^listings_http_requests_in_flight(?:\{[^}]*\})? (\S+)$", re.MULTILINE)


def _json_lines(raw: str) -> list[dict[str, Any]]:
    entries = []
    for line in raw.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


async def exit_code(
    proc: Popen[bytes], what: str, timeout: float, details: Callable[[], str] | None = None
) -> int:
    """The exit status of `proc`, once it has exited."""

    async def exited() -> int | None:
        return proc.poll()

    code = await wait_for_async(
        exited,
        until=lambda code: code is not None,
        what=f"{what} exiting",
        timeout=timeout,
        details=details,
    )
    assert code is not None
    return code


# --- the API process -------------------------------------------------------------------------


@dataclass
class Api:
    """A running `listings api` (the gunicorn master is `proc`) on 127.0.0.1:`port`."""

    proc: Popen[bytes]
    port: int
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def messages(self) -> list[str]:
        return [str(e.get("message", "")) for e in _json_lines(self.log())]

    def count(self, message: str, exact: bool = False) -> int:
        return sum(1 for m in self.messages() if (m == message if exact else message in m))

    async def wait_log(self, message: str, times: int = 1, exact: bool = False) -> None:
        async def logged() -> int:
            if self.proc.poll() is not None:
                raise AssertionError(f"api exited before logging {message!r}:\n{self.log()}")
            return self.count(message, exact)

        await wait_for_async(
            logged,
            until=lambda count: count >= times,
            what=f"api logging {message!r} x{times}",
            timeout=WAIT_S,
            details=self.log,
        )

    async def in_flight(self) -> float:
        """Requests being served right now, per the API's own metrics (this request included)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            response = await http.get("/metrics")
        response.raise_for_status()
        match = IN_FLIGHT.search(response.text)
        assert match, response.text
        return float(match.group(1))

    async def wait_in_flight(self, at_least: int) -> None:
        await wait_for_async(
            self.in_flight,
            until=lambda count: count >= at_least,
            what=f"{at_least} requests in flight",
            timeout=WAIT_S,
            details=self.log,
        )

    async def wait_exit(self) -> int:
        return await exit_code(
            self.proc, "the gunicorn master", GRACEFUL_TIMEOUT_S + WAIT_S, details=self.log
        )

    def assert_workers_exited_gracefully(self) -> None:
        """Every uvicorn worker finished its own graceful shutdown: none was killed by the master.

        (gunicorn then logs "Worker (pid:N) was sent SIGTERM!" at info level: uvicorn re-raises
        the SIGTERM it captured once it is done, and uvicorn-worker left that signal at SIG_DFL.)
        """
        messages = self.messages()
        server = re.compile(r"^(Started|Finished) server process \[(\d+)\]$")
        started = {m[2] for m in map(server.match, messages) if m and m[1] == "Started"}
        finished = {m[2] for m in map(server.match, messages) if m and m[1] == "Finished"}
        assert len(started) == API_WORKERS, self.log()
        assert finished == started, self.log()
        assert "Shutting down: Master" in messages, self.log()
        for bad in ("SIGKILL", "WORKER TIMEOUT", "timeout graceful shutdown exceeded"):
            assert bad not in self.log(), self.log()


@pytest.fixture
def start_api(settings: Settings, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    started: list[Api] = []

    async def start() -> Api:
        port = free_port()
        env = settings_env(
            settings, web_concurrency=API_WORKERS, graceful_timeout=GRACEFUL_TIMEOUT_S
        )
        env["GUNICORN_CMD_ARGS"] = f"--bind 127.0.0.1:{port}"
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / f"prometheus-{port}")
        log_path = tmp_path / f"api-{port}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "listings", "api"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                # A process group of its own: teardown can reach uvicorn workers left behind by
                # a master that failed, without touching anything else.
                start_new_session=True,
            )
        api = Api(proc, port, log_path)
        started.append(api)
        # Every worker has run the app's lifespan startup: none is still booting (a worker
        # signalled while booting has not installed uvicorn's handlers yet).
        await api.wait_log("Application startup complete", times=API_WORKERS)
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
            assert (await http.get("/health")).status_code == 200
        return api

    yield start
    for api in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(api.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            api.proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # whatever is left of this group only
            os.killpg(api.proc.pid, signal.SIGKILL)
        api.proc.wait(timeout=30)


def feed(source: str, rows: int) -> bytes:
    lines = ["source,source_id,title,description,kind,price,city,bedrooms"]
    lines += [
        f"{source},{i},Home {i},Sunny flat number {i},apartment,{150_000 + i},Lorient,{i % 4}"
        for i in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


class HeldBody:
    """A request body streamed in pieces: the first goes out at once, the rest on `release()`."""

    def __init__(self, body: bytes, pieces: int = 30, pause_s: float = 0.1) -> None:
        size = -(-len(body) // pieces)
        self.chunks = [body[i : i + size] for i in range(0, len(body), size)]
        self.pause_s = pause_s
        self.released = asyncio.Event()
        self.finished = False

    def release(self) -> None:
        self.released.set()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.chunks[0]
        await asyncio.wait_for(self.released.wait(), timeout=GRACEFUL_TIMEOUT_S)
        for chunk in self.chunks[1:]:
            await asyncio.sleep(self.pause_s)  # ~3 s for the rest of the body
            yield chunk
        self.finished = True


async def post_held(api: Api, body: HeldBody, api_key: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=api.url, timeout=GRACEFUL_TIMEOUT_S) as http:
        return await http.post(
            "/api/v1/ingest",
            content=body,
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "text/csv"},
        )


async def count_rows(engine: AsyncEngine, source: str) -> tuple[int, int]:
    """(rows, distinct source ids) stored for a source."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT count(*), count(DISTINCT source_id) FROM listings WHERE source = :s"),
                {"s": source},
            )
        ).one()
    return int(row[0]), int(row[1])


# --- API tests -------------------------------------------------------------------------------


async def test_an_in_flight_ingest_completes_when_the_api_gets_sigterm(
    start_api: Callable[[], Any],
    api_key: str,
    ingest: Any,
    engine: AsyncEngine,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    rows = 3000
    api: Api = await start_api()
    body = HeldBody(feed("inflight", rows))
    post = asyncio.create_task(post_held(api, body, api_key))
    # The API itself counts the upload as in flight (the /metrics request is the other one).
    await api.wait_in_flight(2)

    api.proc.send_signal(signal.SIGTERM)
    # Every worker is in its graceful shutdown, and one waits for a connection: the upload's.
    await api.wait_log("Shutting down", times=API_WORKERS, exact=True)
    await api.wait_log("Waiting for connections to close")
    assert not post.done()
    body.release()  # the rest of the body now trickles in over ~3 s

    response = await post
    assert body.finished
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert await api.wait_exit() == 0, api.log()
    api.assert_workers_exited_gracefully()

    start_worker()
    job = await ingest.wait(job_id, timeout=120)
    assert (job["status"], job["accepted"], job["rejected"]) == ("done", rows, 0), job
    assert await count_rows(engine, "inflight") == (rows, rows)


async def _connect(port: int) -> bool:
    """True when a TCP connection to the API port is accepted, False when it is refused.

    A reset during the handshake is a refusal too: the connection was queued on a listener that
    closed before accepting it (the race the SIGTERM test provokes on purpose).
    """
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    except (ConnectionRefusedError, ConnectionResetError):
        return False
    writer.close()
    return True


async def test_after_sigterm_the_api_refuses_connections_while_finishing_in_flight(
    start_api: Callable[[], Any],
    api_key: str,
    ingest: Any,
    empty_listings: None,
) -> None:
    api: Api = await start_api()
    # An idle keep-alive connection that already served a request before SIGTERM.
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: listings.test\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    await asyncio.wait_for(reader.readexactly(length), WAIT_S)

    body = HeldBody(feed("refused", 500))
    post = asyncio.create_task(post_held(api, body, api_key))
    await api.wait_in_flight(2)

    api.proc.send_signal(signal.SIGTERM)
    # Accepted until every process has closed the listener.
    await wait_for_async(
        lambda: _connect(api.port),
        until=lambda accepted: not accepted,
        what="connections refused after SIGTERM",
        timeout=WAIT_S,
        details=api.log,
    )

    # Refused while the API is demonstrably still up: the master waits for its busy worker,
    # which still holds the upload (the test has not released its body yet).
    assert api.proc.poll() is None, api.log()
    assert not post.done()
    for _ in range(5):  # and stays so (time is what is tested)
        assert not await _connect(api.port)
        await asyncio.sleep(0.05)
    # The idle keep-alive connection gets no new request served: the server closed it.
    try:
        leftover = await asyncio.wait_for(reader.read(), WAIT_S)
    except ConnectionResetError:
        leftover = b""
    assert leftover == b""
    writer.close()

    body.release()
    response = await post
    assert response.status_code == 202, response.text
    job_url = f"/api/v1/ingest/{response.json()['job_id']}"
    assert (await ingest.client.get(job_url, headers=ingest.auth)).json()["status"] == "queued"
    assert await api.wait_exit() == 0, api.log()
    api.assert_workers_exited_gracefully()
    assert not await _connect(api.port)


# --- worker tests ----------------------------------------------------------------------------

BIG_ROWS = 40_000
BATCH = 200


async def stored_rows(engine: AsyncEngine, source: str) -> dict[str, tuple[Any, ...]]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT source_id, id, created_at, updated_at FROM listings WHERE source = :s"),
            {"s": source},
        )
        return {r.source_id: (r.id, r.created_at, r.updated_at) for r in result}


def worker_log(proc: Popen[bytes]) -> list[dict[str, Any]]:
    return _json_lines(proc.stdout.read().decode(errors="replace") if proc.stdout else "")


async def wait_worker_exit(proc: Popen[bytes]) -> int:
    return await exit_code(proc, "the worker, after SIGTERM,", WAIT_S)


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url.get_secret_value(), decode_responses=True)
    yield client
    await client.aclose()


async def test_worker_sigterm_mid_job_acks_its_batch_and_the_rerun_writes_exact_rows(
    ingest: Any,
    engine: AsyncEngine,
    settings: Settings,
    redis: Redis,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    names = StreamNames.from_settings(settings)
    job_id = await ingest.post(feed("handback", BIG_ROWS))
    consumer = f"it-first-{secrets.token_hex(3)}"
    first = start_worker(worker_batch_size=BATCH, worker_consumer=consumer)
    seen = await wait_until_partly_written(engine, job_id, BIG_ROWS)

    first.send_signal(signal.SIGTERM)
    assert await wait_worker_exit(first) == 0
    entries = worker_log(first)
    messages = [e["message"] for e in entries]
    assert "stop requested: finishing the current batch" in messages
    handed = [e for e in entries if e["message"] == "job handed back to the queue on shutdown"]
    assert [e["job_id"] for e in handed] == [job_id]
    assert messages[-1] == "worker stopped"

    # The batch in progress was committed together with the job's counter, then nothing more.
    committed = await stored_rows(engine, "handback")
    after_stop = await job_row(engine, job_id)
    assert (after_stop["status"], after_stop["attempts"]) == ("queued", 0)
    assert after_stop["accepted"] >= seen
    assert after_stop["accepted"] % BATCH == 0
    assert len(committed) == after_stop["accepted"]
    assert all(int(source_id) < after_stop["accepted"] for source_id in committed)

    # Its delivery is acked and exactly one fresh message for the job waits in the stream.
    pending = await redis.xpending_range(
        names.stream, names.group, "-", "+", 100, consumername=consumer
    )
    assert pending == []
    queued = [f["job_id"] for _, f in await redis.xrange(names.stream)]
    assert queued.count(job_id) == 1

    start_worker()
    job = await ingest.wait(job_id, timeout=180)
    assert (job["status"], job["accepted"], job["rejected"]) == ("done", BIG_ROWS, 0), job
    assert job["attempts"] == 1  # the graceful hand-back did not count as an attempt
    assert await count_rows(engine, "handback") == (BIG_ROWS, BIG_ROWS)
    # The rows committed before SIGTERM were neither duplicated nor rewritten by the re-run.
    final = await stored_rows(engine, "handback")
    assert {k: final[k] for k in committed} == committed
    assert job_id not in [f["job_id"] for _, f in await redis.xrange(names.stream)]


async def test_graceful_hand_backs_never_dead_letter_a_healthy_job(
    ingest: Any,
    engine: AsyncEngine,
    settings: Settings,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    """More rolling restarts than max attempts during one long job: it still ends done."""
    job_id = await ingest.post(feed("rolling", BIG_ROWS))
    for _ in range(settings.worker_max_attempts + 1):
        worker = start_worker(worker_batch_size=BATCH)
        await wait_until_partly_written(engine, job_id, BIG_ROWS)
        worker.send_signal(signal.SIGTERM)
        assert await wait_worker_exit(worker) == 0
        handed_back = await job_row(engine, job_id)
        assert (handed_back["status"], handed_back["attempts"]) == ("queued", 0), handed_back
    start_worker()
    job = await ingest.wait(job_id, timeout=180)
    assert (job["status"], job["accepted"], job["attempts"]) == ("done", BIG_ROWS, 1), job
    assert await count_rows(engine, "rolling") == (BIG_ROWS, BIG_ROWS)


async def test_an_idle_worker_exits_zero_on_sigterm(
    tmp_path: Path, start_worker: Callable[..., Popen[bytes]]
) -> None:
    heartbeat = tmp_path / "heartbeat"
    worker = start_worker(worker_heartbeat_file=str(heartbeat))
    # The heartbeat is touched at the top of every loop: a second touch means the worker went
    # once through its idle loop (group, retries, an empty blocking read) and is waiting again.
    touches: set[int] = set()

    async def touched_twice() -> bool:
        assert worker.poll() is None, worker_log(worker)
        if heartbeat.exists():
            touches.add(heartbeat.stat().st_mtime_ns)
        return len(touches) >= 2

    await wait_for_async(touched_twice, what="the worker idle", timeout=WAIT_S, interval=0.02)

    worker.send_signal(signal.SIGTERM)
    assert await wait_worker_exit(worker) == 0
    messages = [e["message"] for e in worker_log(worker)]
    assert "stop requested: finishing the current batch" in messages
    assert messages[-1] == "worker stopped"


async def test_a_parked_worker_hands_its_job_back_stays_alive_and_resumes_at_once(
    ingest: Any,
    engine: AsyncEngine,
    tmp_path: Path,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    """SIGUSR1 (a deploy's standby): the batch in progress is committed, the job handed back,
    then nothing is read while the heartbeat goes on; SIGUSR2 (a rollback within the standby):
    it consumes again, with no restart."""
    heartbeat = tmp_path / "heartbeat"
    job_id = await ingest.post(feed("parked", BIG_ROWS))
    worker = start_worker(worker_batch_size=BATCH, worker_heartbeat_file=str(heartbeat))
    await wait_until_partly_written(engine, job_id, BIG_ROWS)

    worker.send_signal(signal.SIGUSR1)

    async def handed_back() -> bool:
        assert worker.poll() is None, "a parked worker must not exit"
        return (await job_row(engine, job_id))["status"] == "queued"

    await wait_for_async(handed_back, what="the job handed back", timeout=WAIT_S, interval=0.1)
    parked = await job_row(engine, job_id)
    # Parked: alive, its heartbeat fresh, and the job waits in the queue untouched.
    beat = heartbeat.stat().st_mtime_ns

    async def beating() -> bool:
        return heartbeat.stat().st_mtime_ns > beat

    await wait_for_async(beating, what="a parked worker's heartbeat", timeout=WAIT_S)
    await asyncio.sleep(2.0)
    assert worker.poll() is None
    assert await job_row(engine, job_id) == parked

    worker.send_signal(signal.SIGUSR2)
    job = await ingest.wait(job_id, timeout=180)
    assert (job["status"], job["accepted"], job["rejected"]) == ("done", BIG_ROWS, 0), job
    assert job["attempts"] == 1  # handing back to park is no attempt
    assert await count_rows(engine, "parked") == (BIG_ROWS, BIG_ROWS)

    worker.send_signal(signal.SIGTERM)
    assert await wait_worker_exit(worker) == 0
    messages = [e["message"] for e in worker_log(worker)]
    parked_at = messages.index(
        "park requested: finishing the current batch, then idle until SIGUSR2"
    )
    handed = messages.index("job handed back to the queue to park")
    resumed = messages.index("resumed: consuming again")
    assert parked_at < handed < resumed < messages.index("job done")
    assert messages[-1] == "worker stopped"

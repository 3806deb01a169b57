"""Fixtures for the listings service against the real PostgreSQL and Redis of `infra`."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from listings import apikeys, migrate
from listings.api.app import create_app
from listings.db import create_engine
from listings.settings import Settings, load_settings
from service_helpers import settings_env
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from support.waiting import wait_for_async

MAX_FEED_BYTES = 8_000_000


@pytest.fixture(scope="session")
def migrated(infra: Any) -> str:
    """The database URL, with the schema at the migration head."""
    migrate.upgrade(infra.database_url)
    url: str = infra.database_url
    return url


@pytest.fixture(scope="session")
def settings(infra: Any, migrated: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(
        env="test",
        database_url=migrated,
        redis_url=infra.redis_url,
        api_key_pepper=secrets.token_urlsafe(32),
        # Streams of their own, so a stray consumer of another session never steals a job.
        stream_prefix=f"it-{secrets.token_hex(4)}",
        max_feed_bytes=MAX_FEED_BYTES,
        db_timeout_s=2.0,
        worker_batch_size=500,
        worker_block_ms=200,
        worker_claim_idle_ms=1500,
        worker_retry_base_ms=100,
        worker_max_attempts=3,
        worker_metrics_port=0,
        worker_heartbeat_file=str(tmp_path_factory.mktemp("worker") / "heartbeat"),
    )


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(settings)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """One app for the whole session: /ready must recover without being recreated."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://listings.test") as http,
    ):
        yield http


@pytest.fixture
async def api_key(engine: AsyncEngine, settings: Settings) -> str:
    """A fresh key per test: the migrations test drops and recreates every table."""
    async with engine.begin() as conn:
        return await apikeys.create_key(conn, settings.pepper_bytes(), f"it-{secrets.token_hex(4)}")


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture
async def empty_listings(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE listings, ingest_jobs CASCADE"))


@pytest.fixture
def cli(settings: Settings) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `python -m listings <args>` with the session's settings."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "listings", *args],
            env=settings_env(settings),
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


@pytest.fixture
def start_worker(settings: Settings) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `python -m listings worker` processes; all are stopped at the end of the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**overrides: object) -> subprocess.Popen[bytes]:
        overrides.setdefault("worker_consumer", f"it-worker-{len(started)}-{secrets.token_hex(3)}")
        proc = subprocess.Popen(
            [sys.executable, "-m", "listings", "worker"],
            env=settings_env(settings, **overrides),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
    for proc in started:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Ingest:
    """Submit feeds through the API and wait for their jobs."""

    client: httpx.AsyncClient
    auth: dict[str, str]

    async def post(self, body: bytes, content_type: str = "text/csv") -> str:
        response = await self.client.post(
            "/api/v1/ingest", content=body, headers={**self.auth, "Content-Type": content_type}
        )
        assert response.status_code == 202, response.text
        job_id: str = response.json()["job_id"]
        return job_id

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/v1/ingest/{job_id}", headers=self.auth)
        job: dict[str, Any] = response.json()
        return job

    async def wait(
        self, job_id: str, timeout: float = 60.0, until: tuple[str, ...] = ("done", "failed")
    ) -> dict[str, Any]:
        return await wait_for_async(
            lambda: self.job(job_id),
            until=lambda job: job["status"] in until,
            what=f"job {job_id} {' or '.join(until)}",
            timeout=timeout,
            interval=0.1,
        )

    @staticmethod
    def csv(rows: list[dict[str, object]]) -> bytes:
        columns = list(rows[0])
        lines = [",".join(columns)]
        lines += [",".join(str(row.get(c, "")) for c in columns) for row in rows]
        return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def ingest(client: httpx.AsyncClient, auth: dict[str, str]) -> Ingest:
    return Ingest(client, auth)

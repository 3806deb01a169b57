"""The worker's metrics against the real Redis and PostgreSQL: backlog gauges and row counters.

Issue 4: "ingest jobs by status, listings accepted/rejected, batch duration, stream length and
consumer lag; build info with version and git sha".
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from subprocess import Popen
from typing import Any

import asyncpg
import httpx
import pytest
from free_port import free_port
from listings.db import asyncpg_dsn
from listings.ingest.backlog import BacklogSampler
from listings.ingest.queue import StreamNames
from listings.settings import Settings
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from support.waiting import wait_for_async

pytestmark = pytest.mark.integration

WAIT_S = 60.0  # a deadline for each wait, never an assertion about speed
SAMPLE_S = 0.2  # LISTINGS_WORKER_METRICS_INTERVAL_S of the workers started here


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url.get_secret_value(), decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def pg_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(
        asyncpg_dsn(settings.database_url.get_secret_value()), min_size=0, max_size=1
    )
    yield pool
    await pool.close()


def sampled(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_the_sampler_reads_the_real_stream_group_and_job_table(
    redis: Redis,
    pg_pool: asyncpg.Pool,
    engine: AsyncEngine,
    settings: Settings,
    empty_listings: None,
) -> None:
    names = StreamNames.from_settings(
        settings.model_copy(update={"stream_prefix": f"it-backlog-{secrets.token_hex(4)}"})
    )
    ids = [await redis.xadd(names.stream, {"job_id": str(uuid.uuid4())}) for _ in range(3)]
    await redis.xgroup_create(names.stream, names.group, id="0")
    # The first two delivered, the second acked and deleted as the worker does; the third not
    # delivered yet. (Redis 7 cannot compute this group's lag: deleted entries fragment it.)
    await redis.xreadgroup(names.group, "it-consumer", {names.stream: ">"}, count=2)
    await redis.xack(names.stream, names.group, ids[1])
    await redis.xdel(names.stream, ids[1])
    await redis.zadd(names.retry, {"retry-me": time.time() * 1000})
    async with engine.begin() as conn:
        for status in ("queued", "queued", "running", "done", "failed"):
            await conn.execute(
                text(
                    "INSERT INTO ingest_jobs (id, status, content_type) "
                    "VALUES (:id, :status, 'text/csv')"
                ),
                {"id": uuid.uuid4(), "status": status},
            )

    async def pool() -> asyncpg.Pool:
        return pg_pool

    sampler = BacklogSampler(redis, names, pool, db_timeout_s=5)
    errors_before = [
        sampled("listings_ingest_sample_errors_total", source=s) for s in ("redis", "postgres")
    ]
    try:
        await sampler.sample()
    finally:
        await redis.delete(names.stream, names.retry)
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE ingest_jobs CASCADE"))
    assert {
        "stream": sampled("listings_ingest_stream_length"),
        "lag": sampled("listings_ingest_consumer_lag"),
        "pending": sampled("listings_ingest_pending"),
        "retry": sampled("listings_ingest_retry_scheduled"),
        "queued": sampled("listings_ingest_jobs_by_status", status="queued"),
        "running": sampled("listings_ingest_jobs_by_status", status="running"),
    } == {"stream": 2, "lag": 1, "pending": 1, "retry": 1, "queued": 2, "running": 1}
    assert [
        sampled("listings_ingest_sample_errors_total", source=s) for s in ("redis", "postgres")
    ] == errors_before


class Samples:
    """One scrape: `samples(name, **labels)` is a sample's value, None when absent."""

    def __init__(self, text_page: str = "") -> None:
        self.values = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text_page)
            for sample in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float | None:
        return self.values.get((name, tuple(sorted(labels.items()))))

    def __repr__(self) -> str:
        return repr({k: v for k, v in self.values.items() if k[0].startswith("listings_")})


class WorkerMetrics:
    """The /metrics page of a worker process on 127.0.0.1:`port`."""

    def __init__(self, proc: Popen[bytes], port: int) -> None:
        self.proc = proc
        self.port = port

    async def read(self) -> Samples:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(f"http://127.0.0.1:{self.port}/metrics")
        response.raise_for_status()
        return Samples(response.text)

    async def wait_for(self, what: str, check: Callable[[Samples], bool]) -> Samples:
        """Poll the page until `check` holds for it."""

        async def page() -> Samples:
            assert self.proc.poll() is None, f"the worker exited while waiting for {what}"
            try:
                return await self.read()
            except httpx.TransportError:
                return Samples()  # not listening yet

        return await wait_for_async(
            page, until=check, what=f"worker metrics showing {what}", timeout=WAIT_S, interval=0.1
        )


async def test_the_worker_exports_the_backlog_and_counts_the_rows_it_ingests(
    ingest: Any,
    settings: Settings,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    rows: list[dict[str, object]] = [
        {
            "source": "metrics",
            "source_id": f"m{i}",
            "title": f"Flat {i}",
            "kind": "apartment",
            "price": 100_000 + i,
            "city": "Brest",
        }
        for i in range(5)
    ]
    rows.append({**rows[0], "source_id": "bad", "kind": "boat"})
    job_id = await ingest.post(ingest.csv(rows))

    # A worker that reaches Redis but not PostgreSQL: it takes the message and cannot run it,
    # so the job's message stays in the stream, and the sampler reports what it can.
    stuck = WorkerMetrics(
        start_worker(
            database_url=f"postgresql+asyncpg://listings:nope@127.0.0.1:{free_port()}/listings",
            worker_metrics_port=(port := free_port()),
            worker_metrics_interval_s=SAMPLE_S,
        ),
        port,
    )
    value = await stuck.wait_for(
        "one message pending and a failed PostgreSQL sample",
        lambda v: (
            v("listings_ingest_stream_length") == 1
            and v("listings_ingest_pending") == 1
            and (v("listings_ingest_sample_errors_total", source="postgres") or 0) >= 1
        ),
    )
    assert value("listings_ingest_consumer_lag") == 0
    assert value("listings_ingest_retry_scheduled") == 0
    # Never read from PostgreSQL, so no job counts rather than made-up zeros.
    assert value("listings_ingest_jobs_by_status", status="queued") is None
    assert (
        value(
            "listings_build_info",
            version=settings.version,
            git_sha=settings.git_sha,
            release=settings.release,
        )
        == 1
    )
    stuck.proc.terminate()
    assert stuck.proc.wait(timeout=30) == 0

    # A healthy worker takes the message over once it has been idle long enough, and runs it.
    healthy = WorkerMetrics(
        start_worker(worker_metrics_port=(port := free_port()), worker_metrics_interval_s=SAMPLE_S),
        port,
    )
    job = await ingest.wait(job_id, timeout=WAIT_S)
    assert (job["status"], job["accepted"], job["rejected"]) == ("done", 5, 1)
    # A scrape may fall between a round's Redis and PostgreSQL samples (the backlog from Redis
    # already empty, the job counts still the last round's): wait for both sides.
    value = await healthy.wait_for(
        "an empty backlog after the job",
        lambda v: (
            v("listings_ingest_stream_length") == 0
            and v("listings_ingest_pending") == 0
            and v("listings_ingest_jobs_by_status", status="running") == 0
            and v("listings_ingest_jobs_by_status", status="queued") == 0
        ),
    )
    assert value("listings_ingest_consumer_lag") == 0
    assert value("listings_ingest_rows_total", result="accepted") == 5
    assert value("listings_ingest_rows_total", result="rejected") == 1
    assert value("listings_ingest_jobs_total", status="done") == 1
    assert (value("listings_ingest_batch_duration_seconds_count") or 0) >= 1
    assert value("listings_ingest_sample_errors_total", source="redis") is None

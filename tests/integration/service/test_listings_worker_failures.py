import asyncio
import signal
import time
from collections.abc import Callable
from subprocess import Popen
from typing import Any

import pytest
from listings.ingest.queue import StreamNames
from listings.settings import Settings
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.integration

ROWS = 40_000


def big_feed(source: str) -> bytes:
    lines = ["source,source_id,title,description,kind,price,city,bedrooms"]
    lines += [
        f"{source},{i},Home {i},Quiet street number {i},apartment,{100_000 + i},Brest,{i % 5}"
        for i in range(ROWS)
    ]
    return ("\n".join(lines) + "\n").encode()


async def job_row(engine: AsyncEngine, job_id: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    text("SELECT status, accepted, attempts FROM ingest_jobs WHERE id = :id"),
                    {"id": job_id},
                )
            )
            .mappings()
            .one()
        )
    return dict(row)


async def count(engine: AsyncEngine, source: str) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text("SELECT count(*) FROM listings WHERE source = :s"), {"s": source}
                )
            ).scalar_one()
        )


async def wait_until_partly_written(engine: AsyncEngine, job_id: str) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        row = await job_row(engine, job_id)
        if row["status"] == "running" and 0 < row["accepted"] < ROWS:
            return int(row["accepted"])
        assert row["status"] != "done", "the job finished before the worker could be stopped"
        await asyncio.sleep(0.01)
    raise AssertionError("the job never started")


async def test_a_worker_killed_mid_job_loses_nothing(
    ingest: Any,
    engine: AsyncEngine,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    job_id = await ingest.post(big_feed("crash"))
    first = start_worker(worker_batch_size=200)
    written = await wait_until_partly_written(engine, job_id)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert written < ROWS
    assert (await job_row(engine, job_id))["status"] == "running"

    start_worker()  # takes the pending message over after LISTINGS_WORKER_CLAIM_IDLE_MS
    job = await ingest.wait(job_id, timeout=120)
    assert (job["status"], job["accepted"], job["rejected"]) == ("done", ROWS, 0)
    assert job["attempts"] == 2
    assert await count(engine, "crash") == ROWS


async def test_sigterm_finishes_the_batch_and_hands_the_job_back(
    ingest: Any,
    engine: AsyncEngine,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    job_id = await ingest.post(big_feed("term"))
    first = start_worker(worker_batch_size=200)
    await wait_until_partly_written(engine, job_id)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=15) == 0
    log = first.stdout.read().decode() if first.stdout else ""
    assert "job handed back to the queue on shutdown" in log

    start_worker()
    job = await ingest.wait(job_id, timeout=120)
    assert (job["status"], job["accepted"]) == ("done", ROWS)
    assert await count(engine, "term") == ROWS


async def test_a_job_failing_every_time_is_dead_lettered(
    ingest: Any,
    engine: AsyncEngine,
    settings: Settings,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    job_id = await ingest.post(
        ingest.csv(
            [
                {
                    "source": "s",
                    "source_id": "1",
                    "title": "t",
                    "kind": "land",
                    "price": 5,
                    "city": "Caen",
                }
            ]
        )
    )
    # A payload that vanished makes every attempt fail the same way.
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM ingest_payloads WHERE job_id = :id"), {"id": job_id})
    worker = start_worker()
    job = await ingest.wait(job_id, timeout=60)
    assert job["status"] == "failed"
    assert job["attempts"] == settings.worker_max_attempts
    assert "payload" in job["error"]

    redis = Redis.from_url(settings.redis_url.get_secret_value(), decode_responses=True)
    try:
        dead = await redis.xrange(StreamNames.from_settings(settings).dead)
    finally:
        await redis.aclose()
    assert job_id in [fields["job_id"] for _, fields in dead]
    worker.terminate()
    worker.wait(timeout=15)
    log = worker.stdout.read().decode() if worker.stdout else ""
    assert "job attempt failed, retrying" in log
    assert "job dead-lettered" in log

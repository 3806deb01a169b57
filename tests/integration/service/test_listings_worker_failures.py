import asyncio
import random
import signal
from collections.abc import Callable
from subprocess import Popen
from typing import Any

import pytest
from listings.ingest.queue import StreamNames
from listings.settings import Settings
from redis.asyncio import Redis
from service_helpers import (
    ROWS,
    big_feed,
    count,
    job_row,
    stop_all,
    wait_until_partly_written,
    worker_messages,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from support.waiting import wait_for_async

pytestmark = pytest.mark.integration


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


async def job_times(engine: AsyncEngine, job_id: str) -> float:
    async with engine.connect() as conn:
        seconds = (
            await conn.execute(
                text(
                    "SELECT extract(epoch FROM finished_at - started_at) "
                    "FROM ingest_jobs WHERE id = :id"
                ),
                {"id": job_id},
            )
        ).scalar_one()
    return float(seconds)


async def test_a_job_longer_than_the_claim_idle_time_stays_with_its_live_worker(
    ingest: Any,
    engine: AsyncEngine,
    settings: Settings,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    """Issue: Redis counts a pending entry's idle time from delivery, so an idle worker used to
    XAUTOCLAIM a job still being worked on, restart it, and dead-letter it after max attempts."""
    claim_idle_ms = 1000
    job_id = await ingest.post(big_feed("long"))
    workers = [
        start_worker(worker_batch_size=50, worker_claim_idle_ms=claim_idle_ms) for _ in range(2)
    ]
    job = await ingest.wait(job_id, timeout=180)
    assert (job["status"], job["accepted"], job["rejected"]) == ("done", ROWS, 0), job
    assert job["attempts"] == 1, job
    # The test means something only if the job outlived the claim idle time several times.
    assert await job_times(engine, job_id) > 3 * claim_idle_ms / 1000
    assert await count(engine, "long") == ROWS

    redis = Redis.from_url(settings.redis_url.get_secret_value(), decode_responses=True)
    try:
        names = StreamNames.from_settings(settings)
        dead = await redis.xrange(names.dead)
        pending = await redis.xpending(names.stream, names.group)
    finally:
        await redis.aclose()
    assert job_id not in [fields["job_id"] for _, fields in dead]
    assert pending["pending"] == 0
    stop_all(*workers)
    for worker in workers:
        messages = worker_messages(worker)
        assert "took over a pending job from another consumer" not in messages
        assert "job dead-lettered" not in messages
        assert not [m for m in messages if "superseded" in m]


async def test_a_stalled_worker_whose_job_was_taken_over_stops_without_touching_it(
    ingest: Any,
    engine: AsyncEngine,
    settings: Settings,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    """A worker frozen longer than the claim idle time loses its job to another worker; when it
    wakes up, its attempt number no longer matches: it must neither write nor ack."""
    names = StreamNames.from_settings(settings)
    job_id = await ingest.post(big_feed("stall"))
    first = start_worker(worker_batch_size=200, worker_claim_idle_ms=1000)
    first_consumer = None
    redis = Redis.from_url(settings.redis_url.get_secret_value(), decode_responses=True)
    try:
        await wait_until_partly_written(engine, job_id)
        first.send_signal(signal.SIGSTOP)  # frozen: no renewal, no writes
        [entry] = await redis.xpending_range(names.stream, names.group, "-", "+", 10)
        first_consumer = entry["consumer"]
        second = start_worker(worker_batch_size=200, worker_claim_idle_ms=1000)

        async def taken_over() -> bool:
            # The second worker takes the message over once it is idle long enough.
            entries = await redis.xpending_range(names.stream, names.group, "-", "+", 10)
            return bool(entries) and entries[0]["consumer"] != first_consumer

        await wait_for_async(taken_over, what="the stalled job taken over by the second worker")
        first.send_signal(signal.SIGCONT)
        job = await ingest.wait(job_id, timeout=180)
        assert (job["status"], job["accepted"], job["rejected"]) == ("done", ROWS, 0), job
        assert job["attempts"] == 2, job
        assert await count(engine, "stall") == ROWS
        assert job_id not in [fields["job_id"] for _, fields in await redis.xrange(names.dead)]
        assert (await redis.xpending(names.stream, names.group))["pending"] == 0
    finally:
        first.send_signal(signal.SIGCONT)
        await redis.aclose()
    # The first worker noticed and went back to waiting for work: still running a second later,
    # job untouched (time is what is tested: that it stays up).
    await asyncio.sleep(1)
    assert first.poll() is None
    stop_all(first, second)
    first_log = worker_messages(first)
    assert [m for m in first_log if "superseded" in m], first_log
    assert "job done" not in first_log
    assert "job dead-lettered" not in first_log
    assert "job done" in worker_messages(second)


def shuffled_rounds(source: str, listings: int, rounds: int, seed: int) -> bytes:
    """Every listing once per round (one round = one batch), each round in a random order."""
    shuffle = random.Random(seed).shuffle
    lines = ["source,source_id,title,kind,price,city"]
    for round_ in range(rounds):
        ids = list(range(listings))
        shuffle(ids)
        lines += [f"{source},{i},Home {i},house,{1000 + round_ * 10 + seed},Vannes" for i in ids]
    return ("\n".join(lines) + "\n").encode()


async def test_concurrent_ingests_of_the_same_listings_in_other_orders_do_not_deadlock(
    ingest: Any,
    engine: AsyncEngine,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    listings, rounds = 2000, 12
    first = await ingest.post(shuffled_rounds("overlap", listings, rounds, seed=1))
    second = await ingest.post(shuffled_rounds("overlap", listings, rounds, seed=2))
    workers = [start_worker(worker_batch_size=listings) for _ in range(2)]
    jobs = [await ingest.wait(job_id, timeout=180) for job_id in (first, second)]
    stop_all(*workers)
    logs = [worker_messages(worker) for worker in workers]
    # Both ran at once (one job each), and neither attempt failed on a deadlock.
    assert all("job started" in log for log in logs), logs
    for job in jobs:
        assert (job["status"], job["accepted"], job["attempts"]) == (
            "done",
            listings * rounds,
            1,
        ), (job, logs)
    assert not [m for log in logs for m in log if "retrying" in m or "deadlock" in m], logs
    assert await count(engine, "overlap") == listings


async def test_a_hung_statement_times_out_instead_of_blocking_the_worker(
    ingest: Any,
    engine: AsyncEngine,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    job_id = await ingest.post(big_feed("hung")[:2000])
    blocker = await engine.connect()
    try:
        # Holding the job row makes the worker's first statement on it wait.
        transaction = await blocker.begin()
        await blocker.execute(
            text("SELECT 1 FROM ingest_jobs WHERE id = :id FOR UPDATE"), {"id": job_id}
        )
        worker = start_worker(worker_db_timeout_s=0.5)
        # Time is what is tested: several statement timeouts long, the worker stays up.
        await asyncio.sleep(3)
        assert worker.poll() is None
        await transaction.rollback()
    finally:
        await blocker.close()
    try:
        job = await ingest.wait(job_id, timeout=60)
    finally:
        stop_all(worker)
        messages = worker_messages(worker)
    assert job["status"] == "done", (job, messages)
    # Without a command timeout the worker would simply have waited for the lock.
    assert [m for m in messages if "dependency unavailable" in m and "timeout" in m.lower()], (
        messages
    )

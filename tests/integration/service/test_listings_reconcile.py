"""The reconciler: lost jobs come back, nothing runs twice, old jobs go, one worker at a time."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from subprocess import Popen
from typing import Any

import asyncpg
import pytest
from listings.db import asyncpg_dsn
from listings.ingest import reconcile
from listings.ingest.jobs import create_job
from listings.ingest.queue import JobMessage, StreamNames
from listings.ingest.reconcile import Reconciler
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

FAST = {"worker_reconcile_interval_s": 0.3, "worker_reconcile_after_s": 1}


def small_feed(source: str, n: int = 3) -> bytes:
    lines = ["source,source_id,title,kind,price,city"]
    lines += [f"{source},{i},Home {i},house,{1000 + i},Rennes" for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url.get_secret_value(), decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(asyncpg_dsn(settings.database_url.get_secret_value()))
    yield p
    await p.close()


@pytest.fixture
def names(settings: Settings) -> StreamNames:
    return StreamNames.from_settings(settings)


async def lost_job(engine: AsyncEngine, body: bytes, age_s: int = 3600) -> str:
    """A job the API committed but never queued (it died before XADD)."""
    job_id = uuid.uuid4()
    await create_job(engine, job_id, "text/csv", f"req-{job_id.hex[:8]}", body)
    await backdate(engine, str(job_id), age_s)
    return str(job_id)


async def backdate(engine: AsyncEngine, job_id: str, age_s: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE ingest_jobs SET created_at = now() - make_interval(secs => :s), "
                "updated_at = now() - make_interval(secs => :s) WHERE id = :id"
            ),
            {"id": job_id, "s": float(age_s)},
        )


async def full_row(engine: AsyncEngine, job_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    text(
                        "SELECT status, accepted, rejected, attempts, finished_at, "
                        "(SELECT count(*) FROM ingest_payloads WHERE job_id = j.id) AS payloads "
                        "FROM ingest_jobs j WHERE id = :id"
                    ),
                    {"id": job_id},
                )
            )
            .mappings()
            .first()
        )
    return dict(row) if row else None


async def test_a_job_that_never_reached_the_stream_is_run_by_the_reconciler(
    ingest: Any,
    engine: AsyncEngine,
    redis: Redis,
    names: StreamNames,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    job_id = await lost_job(engine, small_feed("lost", 5), age_s=0)
    assert await redis.xlen(names.stream) == 0
    worker = start_worker(**FAST)
    job = await ingest.wait(job_id, timeout=30)
    assert (job["status"], job["accepted"], job["rejected"], job["attempts"]) == ("done", 5, 0, 1)
    assert await count(engine, "lost") == 5
    assert (await full_row(engine, job_id) or {})["payloads"] == 0
    stop_all(worker)
    messages = worker_messages(worker)
    assert "reconcile: queued job had no message in the stream, queued it again" in messages


async def test_jobs_with_a_message_are_not_queued_again(
    ingest: Any,
    engine: AsyncEngine,
    settings: Settings,
    redis: Redis,
    pool: asyncpg.Pool,
    names: StreamNames,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    waiting = await ingest.post(small_feed("waiting"))  # undelivered entry
    pending = await ingest.post(small_feed("pending"))
    # Delivered to a consumer that died before starting it: in the group's pending list.
    await redis.xreadgroup(names.group, "ghost", {names.stream: ">"}, count=1)
    assert (await redis.xpending(names.stream, names.group))["pending"] == 1
    # A job waiting in the retry set for its next attempt.
    retrying = await lost_job(engine, small_feed("retrying"))
    member = json.dumps(JobMessage(uuid.UUID(retrying), "r").fields())
    await redis.zadd(names.retry, {member: time.time() * 1000 + 3_600_000})
    lost = await lost_job(engine, small_feed("lost2"))
    for job_id in (waiting, pending):
        await backdate(engine, job_id, 3600)

    try:
        result = await Reconciler(settings, redis, names).run(pool)
        assert result is not None
        assert result.requeued == 1  # only the lost one
        entries = await redis.xrange(names.stream)
        assert sorted(f["job_id"] for _, f in entries) == sorted([waiting, pending, lost])

        worker = start_worker(**FAST)  # also reconciles, repeatedly, while the jobs run
        for job_id in (waiting, pending, lost):
            job = await ingest.wait(job_id, timeout=30)
            assert (job["status"], job["accepted"], job["attempts"]) == ("done", 3, 1), job
        # More reconcile rounds (time is what is tested): the retrying job stays where it is.
        await asyncio.sleep(1.5)
        assert (await job_row(engine, retrying))["status"] == "queued"
        assert await redis.xlen(names.stream) == 0
        stop_all(worker)
        messages = worker_messages(worker)
        assert not [m for m in messages if "dropping" in m or "superseded" in m], messages
    finally:
        await redis.delete(names.retry)


async def test_a_duplicate_message_for_a_finished_job_is_acked_and_dropped(
    ingest: Any,
    engine: AsyncEngine,
    redis: Redis,
    names: StreamNames,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    job_id = await ingest.post(small_feed("dupdone", 4))
    worker = start_worker()
    await ingest.wait(job_id, timeout=30)
    before = await full_row(engine, job_id)
    await redis.xadd(names.stream, JobMessage(uuid.UUID(job_id), "dup").fields())  # type: ignore[arg-type]

    async def drained() -> bool:
        pending = (await redis.xpending(names.stream, names.group))["pending"]
        return bool(await redis.xlen(names.stream) == 0 and pending == 0)

    await wait_for_async(drained, what="the duplicate message acked", timeout=20)
    assert await full_row(engine, job_id) == before
    assert before is not None and (before["status"], before["attempts"]) == ("done", 1)
    stop_all(worker)
    assert "job unknown, already running or finished, dropping message" in worker_messages(worker)


async def test_a_duplicate_message_for_a_running_job_does_not_restart_it(
    ingest: Any,
    engine: AsyncEngine,
    settings: Settings,
    redis: Redis,
    names: StreamNames,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    job_id = await ingest.post(big_feed("duprun"))
    first = start_worker(worker_batch_size=100)
    await wait_until_partly_written(engine, job_id)
    await redis.xadd(names.stream, JobMessage(uuid.UUID(job_id), "dup").fields())  # type: ignore[arg-type]
    second = start_worker(worker_batch_size=100)
    job = await ingest.wait(job_id, timeout=180)
    assert (job["status"], job["accepted"], job["rejected"]) == ("done", ROWS, 0), job
    assert job["attempts"] == 1, job
    assert await count(engine, "duprun") == ROWS
    assert await redis.xlen(names.stream) == 0
    assert (await redis.xpending(names.stream, names.group))["pending"] == 0
    stop_all(first, second)
    messages = worker_messages(first) + worker_messages(second)
    assert "job unknown, already running or finished, dropping message" in messages
    assert not [m for m in messages if "superseded" in m], messages
    assert messages.count("job done") == 1


async def insert_job(
    engine: AsyncEngine, status: str, age_days: float, payload: bool = False
) -> str:
    job_id = str(uuid.uuid4())
    finished = status in ("done", "failed")
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO ingest_jobs (id, status, content_type, attempts, created_at, "
                "updated_at, finished_at) VALUES (:id, :status, 'text/csv', 1, "
                "now() - make_interval(days => :d), now() - make_interval(days => :d), "
                "CASE WHEN :fin THEN now() - make_interval(days => :d) END)"
            ),
            {"id": job_id, "status": status, "d": age_days, "fin": finished},
        )
        if payload:
            await conn.execute(
                text("INSERT INTO ingest_payloads (job_id, body) VALUES (:id, 'x')"),
                {"id": job_id},
            )
    return job_id


async def test_old_finished_jobs_are_deleted_recent_ones_kept(
    engine: AsyncEngine,
    settings: Settings,
    redis: Redis,
    pool: asyncpg.Pool,
    names: StreamNames,
    monkeypatch: pytest.MonkeyPatch,
    empty_listings: None,
) -> None:
    monkeypatch.setattr(reconcile, "PURGE_BATCH", 2)  # several batches in one run
    assert settings.job_retention_days == 30
    old = [await insert_job(engine, s, 31 + i) for i, s in enumerate(["done", "failed"] * 3)]
    recent_done = await insert_job(engine, "done", 29)
    recent_failed = await insert_job(engine, "failed", 1)
    old_running = await insert_job(engine, "running", 60)
    leftover = await insert_job(engine, "done", 2, payload=True)  # payload should be gone
    result = await Reconciler(settings, redis, names).run(pool)
    assert result is not None
    assert (result.jobs_deleted, result.payloads_deleted) == (6, 1)
    for job_id in old:
        assert await full_row(engine, job_id) is None
    for job_id in (recent_done, recent_failed, old_running, leftover):
        assert await full_row(engine, job_id) is not None
    assert (await full_row(engine, leftover) or {})["payloads"] == 0
    assert await redis.xlen(names.stream) == 0


async def test_two_workers_never_reconcile_at_the_same_time(
    engine: AsyncEngine,
    settings: Settings,
    redis: Redis,
    pool: asyncpg.Pool,
    names: StreamNames,
    empty_listings: None,
) -> None:
    running = 0
    most = 0
    release = asyncio.Event()

    class Slow(Reconciler):
        async def reconcile(self, pool: asyncpg.Pool) -> reconcile.Result:
            nonlocal running, most
            running += 1
            most = max(most, running)
            try:
                await release.wait()
                return await super().reconcile(pool)
            finally:
                running -= 1

    first, second = Slow(settings, redis, names), Slow(settings, redis, names)
    lock = reconcile.lock_key(names)
    task = asyncio.create_task(first.run(pool))
    await wait_for_async(
        lambda: asyncio.sleep(0, running == 1), what="the first reconciler running", timeout=5
    )
    token = await redis.get(lock)
    assert token
    assert 0 < await redis.pttl(lock) <= first.lock_ms
    assert await asyncio.wait_for(second.run(pool), 5) is None  # busy: skipped at once
    assert not await second.release("not-the-owner")  # only the owner deletes the lock
    assert await redis.get(lock) == token
    release.set()
    assert await task is not None
    assert await redis.get(lock) is None  # released by its owner
    assert await second.run(pool) is not None
    assert most == 1

    # An owner whose lock expired and was taken by another worker leaves it alone.
    mine = await first.acquire()
    assert mine is not None
    await redis.set(lock, "someone-else")
    assert not await first.release(mine)
    assert await redis.get(lock) == "someone-else"
    await redis.delete(lock)

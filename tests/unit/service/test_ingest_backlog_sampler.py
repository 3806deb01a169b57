"""The worker's backlog sampler: what each gauge reads, and failures that keep the last values.

Redis and PostgreSQL are stand-ins here (their answers are the point); the integration test
test_listings_worker_metrics.py runs the sampler against the real ones.
"""

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any

import pytest
from listings.ingest.backlog import BacklogSampler
from listings.ingest.queue import StreamNames
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

pytestmark = pytest.mark.unit

NAMES = StreamNames("t:ingest", "t:ingest-workers", "t:ingest:dead", "t:ingest:retry")


def group(pending: int, lag: int | None, name: str = NAMES.group) -> dict[str, Any]:
    return {"name": name, "consumers": 1, "pending": pending, "lag": lag}


class FakeRedis:
    """Answers the sampler's MULTI (XLEN, ZCARD, XINFO GROUPS) with what a test set."""

    def __init__(self) -> None:
        self.answer: list[Any] = [0, 0, []]
        self.failure: Exception | None = None
        self.commands: list[tuple[str, str]] = []

    @asynccontextmanager
    async def pipeline(self, transaction: bool = True) -> Any:
        assert transaction, "one consistent snapshot"
        yield self

    def xlen(self, key: str) -> None:
        self.commands.append(("XLEN", key))

    def zcard(self, key: str) -> None:
        self.commands.append(("ZCARD", key))

    def xinfo_groups(self, key: str) -> None:
        self.commands.append(("XINFO GROUPS", key))

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if self.failure:
            raise self.failure
        return self.answer


class FakePool:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.failure: Exception | None = None
        self.queries: list[str] = []

    @asynccontextmanager
    async def acquire(self, timeout: float) -> Any:
        if self.failure:
            raise self.failure
        yield self

    async def fetch(self, query: str, timeout: float) -> list[dict[str, Any]]:
        self.queries.append(query)
        return self.rows


@pytest.fixture
def redis() -> FakeRedis:
    return FakeRedis()


@pytest.fixture
def pool() -> FakePool:
    return FakePool()


@pytest.fixture
def sampler(redis: FakeRedis, pool: FakePool) -> BacklogSampler:
    async def get_pool() -> Any:
        return pool

    return BacklogSampler(redis, NAMES, get_pool, db_timeout_s=1)  # type: ignore[arg-type]


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def gauges() -> dict[str, float | None]:
    return {
        "stream": gauge("listings_ingest_stream_length"),
        "lag": gauge("listings_ingest_consumer_lag"),
        "pending": gauge("listings_ingest_pending"),
        "retry": gauge("listings_ingest_retry_scheduled"),
        "queued": gauge("listings_ingest_jobs_by_status", status="queued"),
        "running": gauge("listings_ingest_jobs_by_status", status="running"),
    }


def errors(source: str) -> float:
    return gauge("listings_ingest_sample_errors_total", source=source) or 0.0


async def test_a_sample_reads_the_stream_the_group_and_the_job_counts(
    sampler: BacklogSampler, redis: FakeRedis, pool: FakePool
) -> None:
    other = group(pending=9, lag=9, name="someone-else")
    redis.answer = [7, 2, [other, group(pending=3, lag=4)]]
    pool.rows = [{"status": "queued", "jobs": 5}]
    await sampler.sample()
    assert gauges() == {
        "stream": 7,
        "lag": 4,
        "pending": 3,
        "retry": 2,
        "queued": 5,
        "running": 0,
    }
    assert redis.commands == [
        ("XLEN", NAMES.stream),
        ("ZCARD", NAMES.retry),
        ("XINFO GROUPS", NAMES.stream),
    ]
    assert "WHERE status IN ('queued', 'running')" in pool.queries[0]


async def test_a_lag_redis_cannot_compute_is_the_entries_not_pending(
    sampler: BacklogSampler, redis: FakeRedis
) -> None:
    # Redis 7 answers lag nil when deleted entries fragment the stream after the group's
    # position; acked entries are deleted, so every entry not pending waits for delivery.
    redis.answer = [6, 0, [group(pending=2, lag=None)]]
    await sampler.sample()
    assert (gauges()["lag"], gauges()["pending"]) == (4, 2)


async def test_before_the_group_exists_every_entry_is_lag(
    sampler: BacklogSampler, redis: FakeRedis
) -> None:
    redis.answer = [3, 0, []]
    await sampler.sample()
    assert (gauges()["stream"], gauges()["lag"], gauges()["pending"]) == (3, 3, 0)


async def test_before_the_stream_exists_everything_is_zero(
    sampler: BacklogSampler, redis: FakeRedis
) -> None:
    redis.answer = [0, 0, ResponseError("ERR no such key")]
    await sampler.sample()
    assert (gauges()["stream"], gauges()["lag"], gauges()["pending"]) == (0, 0, 0)


async def test_another_redis_error_in_the_snapshot_fails_the_sample(
    sampler: BacklogSampler, redis: FakeRedis
) -> None:
    redis.answer = [1, 0, [group(pending=0, lag=1)]]
    await sampler.sample()
    before = errors("redis")
    redis.answer = [5, 0, ResponseError("WRONGTYPE Operation against a key")]
    await sampler.sample()
    assert errors("redis") == before + 1
    assert gauges()["stream"] == 1


async def test_failures_keep_the_last_values_and_warn_once_per_outage(
    sampler: BacklogSampler,
    redis: FakeRedis,
    pool: FakePool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis.answer = [4, 1, [group(pending=1, lag=3)]]
    pool.rows = [{"status": "running", "jobs": 1}]
    await sampler.sample()
    kept = gauges()
    redis_errors, pg_errors = errors("redis"), errors("postgres")

    redis.failure = RedisConnectionError("Connection refused")
    pool.failure = OSError("connect call failed")
    redis.answer = [99, 99, [group(pending=99, lag=99)]]
    with caplog.at_level(logging.INFO, logger="listings.worker"):
        for _ in range(3):
            await sampler.sample()
        assert gauges() == kept
        assert (errors("redis"), errors("postgres")) == (redis_errors + 3, pg_errors + 3)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2
        assert "from redis" in warnings[0] and "ConnectionError" in warnings[0]
        assert "from postgres" in warnings[1] and "OSError" in warnings[1]

        redis.failure = pool.failure = None
        await sampler.sample()
    assert gauges()["stream"] == 99
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        "sampling the ingest backlog from redis works again",
        "sampling the ingest backlog from postgres works again",
    ]


async def test_the_loop_samples_at_once_and_stops_when_told(
    sampler: BacklogSampler, redis: FakeRedis
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(sampler.run(interval_s=0.01, stop=stop))

    async def three_rounds() -> None:
        while len(redis.commands) < 9:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(three_rounds(), timeout=5)
    stop.set()
    await asyncio.wait_for(task, timeout=2)

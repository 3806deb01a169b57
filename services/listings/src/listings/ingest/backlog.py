"""Backlog gauges, sampled by the worker every LISTINGS_WORKER_METRICS_INTERVAL_S.

From Redis, in one MULTI (a consistent snapshot, each command O(1)): the stream length (XLEN;
acked entries are deleted, so these are exactly the unfinished messages), the group's lag and
pending count (XINFO GROUPS) and the retry set (ZCARD). From PostgreSQL: the jobs queued and
running, one count over ingest_jobs (no index on status, so a scan of a table that the reconciler
keeps to LISTINGS_JOB_RETENTION_DAYS; finished jobs are counted by the outcome counter instead).

Every worker reports the same values: aggregate them with max(), not sum(). A failed sample
logs a warning, counts in listings_ingest_sample_errors_total and leaves the gauges as they were.

Only the worker imports this module: in the API's multiprocess metrics every process would
export these unlabelled gauges as zeros.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from listings.ingest.queue import StreamNames

log = logging.getLogger("listings.worker")

STREAM_LENGTH = Gauge(
    "listings_ingest_stream_length",
    "Entries in the ingest stream: undelivered plus delivered and not yet acked",
)
CONSUMER_LAG = Gauge(
    "listings_ingest_consumer_lag",
    "Entries in the ingest stream not yet delivered to the worker group",
)
PENDING = Gauge(
    "listings_ingest_pending",
    "Entries delivered to a worker and not yet acked (jobs in progress, or of a dead worker)",
)
RETRY_SCHEDULED = Gauge(
    "listings_ingest_retry_scheduled", "Jobs waiting in the retry set for their next attempt"
)
# Not `listings_ingest_jobs`: that name belongs to the listings_ingest_jobs_total counter.
JOBS_BY_STATUS = Gauge(
    "listings_ingest_jobs_by_status",
    "Ingest jobs in PostgreSQL by current status (queued|running)",
    ["status"],
)
SAMPLE_ERRORS = Counter(
    "listings_ingest_sample_errors_total",
    "Backlog samples that failed, by source (redis|postgres); the gauges kept their values",
    ["source"],
)

SAMPLED_STATUSES = ("queued", "running")
_COUNT_JOBS = (
    "SELECT status, count(*) AS jobs FROM ingest_jobs "
    "WHERE status IN ('queued', 'running') GROUP BY status"
)


class BacklogSampler:
    def __init__(
        self,
        redis: Redis,
        names: StreamNames,
        pool: Callable[[], Awaitable[asyncpg.Pool]],
        db_timeout_s: float,
    ) -> None:
        self.redis = redis
        self.names = names
        self.pool = pool
        self.db_timeout_s = db_timeout_s
        self.failing: set[str] = set()  # sources whose last sample failed

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """Sample now and then every interval until `stop` is set."""
        while True:
            await self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
                return

    async def sample(self) -> None:
        """One round; never raises (a metric is not worth a worker)."""
        for source, step in (("redis", self.sample_redis), ("postgres", self.sample_jobs)):
            try:
                await step()
            except Exception as exc:
                SAMPLE_ERRORS.labels(source=source).inc()
                # Once per outage: the main loop already reports a dependency that is away.
                if source not in self.failing:
                    self.failing.add(source)
                    log.warning(
                        "could not sample the ingest backlog from %s, keeping the last values: "
                        "%s: %s",
                        source,
                        type(exc).__name__,
                        exc,
                    )
            else:
                if source in self.failing:
                    self.failing.discard(source)
                    log.info("sampling the ingest backlog from %s works again", source)

    async def sample_redis(self) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xlen(self.names.stream)
            pipe.zcard(self.names.retry)
            pipe.xinfo_groups(self.names.stream)
            length, retry, groups = await pipe.execute(raise_on_error=False)
        for result in (length, retry):
            if isinstance(result, Exception):
                raise result
        if isinstance(groups, ResponseError) and "no such key" in str(groups).lower():
            groups = []  # no stream yet: nothing was ever queued
        elif isinstance(groups, Exception):
            raise groups
        group = _find_group(groups, self.names.group)
        pending = int(group["pending"]) if group else 0
        lag = group.get("lag") if group else length
        if lag is None:
            # Redis cannot compute the lag when deleted entries fragment the stream after the
            # group's position; every entry not pending is undelivered (acked ones are deleted).
            lag = max(0, int(length) - pending)
        STREAM_LENGTH.set(int(length))
        RETRY_SCHEDULED.set(int(retry))
        PENDING.set(pending)
        CONSUMER_LAG.set(int(lag))

    async def sample_jobs(self) -> None:
        pool = await self.pool()
        async with pool.acquire(timeout=self.db_timeout_s) as conn:
            rows = await conn.fetch(_COUNT_JOBS, timeout=self.db_timeout_s)
        counts = {row["status"]: int(row["jobs"]) for row in rows}
        for status in SAMPLED_STATUSES:
            JOBS_BY_STATUS.labels(status=status).set(counts.get(status, 0))


def _find_group(groups: Any, name: str) -> dict[str, Any] | None:
    for group in groups or []:
        if group.get("name") == name:
            return dict(group)
    return None

"""The reconciler: finds jobs the queue lost, and deletes old finished jobs.

The API commits a job row (queued, payload in ingest_payloads) and then XADDs its id: two steps.
If the API dies in between, or Redis loses its last writes (appendfsync everysec) or its volume,
the job would stay queued forever with its payload. The workers run this reconciler every
LISTINGS_WORKER_RECONCILE_INTERVAL_S, one at a time (a Redis lock key set with NX PX and a
random token, deleted only by its owner):

- A job still `queued` whose last change is older than LISTINGS_WORKER_RECONCILE_AFTER_S and that
  has no message in the stream (undelivered or pending: acked entries are deleted, so the stream
  holds exactly the unfinished messages) nor in the retry set is queued again with the same
  message. Redis is read first, in one script (an atomic snapshot: a due retry moves from the set
  to the stream atomically too), then PostgreSQL: every path that puts a job back in the queue
  (retry, hand-back) sets it queued with a fresh updated_at first, so an old queued job missing
  from the snapshot really has no message. Should a duplicate happen anyway (an API stalled for
  minutes between commit and XADD), the worker drops a fresh message whose job is not queued.
- Finished jobs (done/failed) older than LISTINGS_JOB_RETENTION_DAYS are deleted in bounded
  batches, and so is any payload left behind by a finished job.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

import asyncpg
from redis.asyncio import Redis

from listings.ingest.queue import JobMessage, StreamNames
from listings.logs import request_id_var
from listings.metrics import INGEST_RECONCILED
from listings.settings import Settings

log = logging.getLogger("listings.worker")

# Stream entries (and retry-set members) read per run. The stream holds only unfinished work, so
# this is the backlog; beyond it the reconciler cannot tell a lost job from a waiting one and
# re-queues nothing that round.
SCAN_MAX = 10_000
REQUEUE_BATCH = 500  # lost jobs re-queued per run at most
PURGE_BATCH = 1000  # rows per DELETE
PURGE_MAX_BATCHES = 10  # DELETEs per run: the next run goes on
MIN_LOCK_MS = 120_000

# Job ids of every stream entry (undelivered or pending) and of every retry, read atomically.
_SNAPSHOT = """
local cap = tonumber(ARGV[1])
local ids = {}
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', cap + 1)
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'job_id' then table.insert(ids, fields[i + 1]) end
  end
end
local retries = redis.call('ZRANGE', KEYS[2], 0, cap)
for _, member in ipairs(retries) do
  local ok, m = pcall(cjson.decode, member)
  if ok and type(m) == 'table' and type(m['job_id']) == 'string' then
    table.insert(ids, m['job_id'])
  end
end
local capped = 0
if #entries > cap or #retries > cap then capped = 1 end
return {capped, ids}
"""

# Deletes the lock only while it still holds our token: an expired lock taken by another worker
# is not ours to release.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_LOST_JOBS = (
    "SELECT id, request_id FROM ingest_jobs WHERE status = 'queued' "
    "AND updated_at < now() - make_interval(secs => $1) ORDER BY updated_at LIMIT $2"
)
_PURGE_JOBS = (
    "DELETE FROM ingest_jobs WHERE id IN (SELECT id FROM ingest_jobs "
    "WHERE status IN ('done', 'failed') "
    "AND coalesce(finished_at, updated_at) < now() - make_interval(days => $1) LIMIT $2)"
)
_PURGE_PAYLOADS = (
    "DELETE FROM ingest_payloads WHERE job_id IN (SELECT p.job_id FROM ingest_payloads p "
    "JOIN ingest_jobs j ON j.id = p.job_id WHERE j.status IN ('done', 'failed') LIMIT $1)"
)


@dataclass(frozen=True)
class Result:
    requeued: int
    jobs_deleted: int
    payloads_deleted: int
    capped: bool


def lock_key(names: StreamNames) -> str:
    return f"{names.stream}:reconcile-lock"


class Reconciler:
    def __init__(self, settings: Settings, redis: Redis, names: StreamNames) -> None:
        self.settings = settings
        self.redis = redis
        self.names = names
        self.lock_key = lock_key(names)
        # Outlives a run (every statement is bounded); a worker that died holding it delays the
        # next run by this much at most.
        self.lock_ms = max(MIN_LOCK_MS, int(2000 * settings.worker_reconcile_interval_s))
        self.snapshot_script = redis.register_script(_SNAPSHOT)
        self.release_script = redis.register_script(_RELEASE)

    async def acquire(self) -> str | None:
        """Take the lock; its token, or None when another worker holds it."""
        token = secrets.token_hex(16)
        taken = await self.redis.set(self.lock_key, token, nx=True, px=self.lock_ms)
        return token if taken else None

    async def release(self, token: str) -> bool:
        return bool(await self.release_script(keys=[self.lock_key], args=[token]))

    async def run(self, pool: asyncpg.Pool) -> Result | None:
        """One reconcile pass, or None when another worker is doing it."""
        token = await self.acquire()
        if token is None:
            return None
        try:
            return await self.reconcile(pool)
        finally:
            await self.release(token)

    async def reconcile(self, pool: asyncpg.Pool) -> Result:
        async with pool.acquire() as conn:
            requeued, capped = await self.requeue_lost(conn)
            jobs, payloads = await self.purge(conn)
        if requeued or jobs or payloads:
            log.info(
                "reconcile done",
                extra={"requeued": requeued, "jobs_deleted": jobs, "payloads_deleted": payloads},
            )
        return Result(requeued, jobs, payloads, capped)

    async def queued_job_ids(self) -> tuple[set[str], bool]:
        """Job ids with a message in the stream or the retry set; True when the scan was capped."""
        raw: Any = await self.snapshot_script(
            keys=[self.names.stream, self.names.retry], args=[SCAN_MAX]
        )
        capped, ids = raw
        return {str(i) for i in ids}, bool(int(capped))

    async def requeue_lost(self, conn: asyncpg.Connection) -> tuple[int, bool]:
        # Redis first, then PostgreSQL: see the module docstring for why this order is safe.
        present, capped = await self.queued_job_ids()
        if capped:
            log.warning(
                "reconcile: more than %d messages waiting, lost jobs are not looked for this time",
                SCAN_MAX,
            )
            return 0, True
        rows = await conn.fetch(
            _LOST_JOBS, float(self.settings.worker_reconcile_after_s), REQUEUE_BATCH
        )
        requeued = 0
        for row in rows:
            job_id = row["id"]
            if str(job_id) in present:
                continue
            message = JobMessage(job_id, row["request_id"] or "")
            await self.redis.xadd(self.names.stream, message.fields())  # type: ignore[arg-type]
            INGEST_RECONCILED.inc()
            requeued += 1
            token = request_id_var.set(message.request_id or None)
            try:
                log.warning(
                    "reconcile: queued job had no message in the stream, queued it again",
                    extra={"job_id": str(job_id)},
                )
            finally:
                request_id_var.reset(token)
        return requeued, False

    async def purge(self, conn: asyncpg.Connection) -> tuple[int, int]:
        jobs = 0
        for _ in range(PURGE_MAX_BATCHES):
            status = await conn.execute(_PURGE_JOBS, self.settings.job_retention_days, PURGE_BATCH)
            deleted = int(status.split()[-1])
            jobs += deleted
            if deleted < PURGE_BATCH:
                break
        status = await conn.execute(_PURGE_PAYLOADS, PURGE_BATCH)
        payloads = int(status.split()[-1])
        if payloads:
            log.warning(
                "reconcile: deleted payloads of finished jobs", extra={"payloads": payloads}
            )
        return jobs, payloads

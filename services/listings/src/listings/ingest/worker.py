"""The ingest worker: consumes job ids from a Redis stream, writes listings in batches.

Delivery rules: a message is acked only after the job's final commit; a crashed worker's
message is taken over by another consumer (XAUTOCLAIM) and the job re-runs from zero, which is
safe because every write is an upsert; failures retry with exponential backoff through a sorted
set and are dead-lettered after LISTINGS_WORKER_MAX_ATTEMPTS.

A live worker keeps its claim: while it works on a job it resets the message's idle time
(XCLAIM ... JUSTID, only while the message is still its own) every third of
LISTINGS_WORKER_CLAIM_IDLE_MS, so a long job is never taken over from a healthy worker. Should a
takeover happen anyway (a stalled process), the attempt number fences the job row: the old run's
writes match nothing, it logs "superseded" and drops the job without acking or writing.

Parking (SIGUSR1) is for a deploy's standby: the worker finishes the batch in progress, hands
its job back as on SIGTERM, then stays alive reading nothing (its heartbeat goes on, so it stays
healthy); SIGUSR2 resumes it at once, with its connections and imports in place, which a
rollback within the standby uses instead of starting a worker from nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
from prometheus_client import start_http_server
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from listings import redis_client
from listings.db import asyncpg_dsn
from listings.ingest import writer
from listings.ingest.backlog import BacklogSampler
from listings.ingest.batches import Batch, iter_batches
from listings.ingest.feed import FeedFormatError, feed_format
from listings.ingest.queue import DEAD_LETTER_MAXLEN, JobMessage, StreamNames
from listings.ingest.reconcile import Reconciler
from listings.logs import request_id_var
from listings.metrics import BUILD_INFO, INGEST_BATCH_SECONDS, INGEST_JOBS, INGEST_ROWS
from listings.sentry import init_sentry
from listings.settings import Settings

log = logging.getLogger("listings.worker")
MAX_REPORTED_ERRORS = 100
# How often a parked worker touches its heartbeat (and sees a SIGTERM).
PARKED_TICK_S = 1.0

# Moves due retries back into the stream atomically, so two workers never both re-add one.
_PROMOTE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, member in ipairs(due) do
  local m = cjson.decode(member)
  redis.call('XADD', KEYS[2], '*', 'job_id', m['job_id'], 'request_id', m['request_id'])
  redis.call('ZREM', KEYS[1], member)
end
return #due
"""

# Resets the idle time of a pending message, but only while this consumer still owns it:
# a plain XCLAIM would steal the message back from a worker that took it over.
_RENEW_CLAIM = """
local entry = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if entry[1] == nil or entry[1][2] ~= ARGV[2] then
  return 0
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"""


class Interrupted(Exception):
    """SIGTERM arrived; the current batch is committed and the job goes back to the queue."""


class Claim:
    """This worker's hold on one pending message, renewed in the background while a job runs."""

    def __init__(self, worker: Worker, msg_id: str) -> None:
        self.worker = worker
        self.msg_id = msg_id
        self.lost = False  # another consumer owns the message now
        self.interval = worker.settings.worker_claim_idle_ms / 3000
        self.renewed = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def renew(self) -> None:
        names = self.worker.names
        owned = await self.worker.renew_script(
            keys=[names.stream], args=[names.group, self.worker.consumer, self.msg_id]
        )
        self.renewed = time.monotonic()
        if not owned:
            self.lost = True

    async def renew_if_due(self) -> None:
        """After a batch commit: renew only when a sixth of the idle time has gone by."""
        if time.monotonic() - self.renewed >= self.interval / 2:
            await self.renew()
        if self.lost:
            raise writer.Superseded(self.msg_id)

    async def _keep(self) -> None:
        # Stopped through `closed`, never cancelled: a Redis command cut off halfway can leave
        # the client hanging.
        while not self.lost:
            delay = max(0.0, self.renewed + self.interval - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed.wait(), timeout=delay)
                return
            try:
                await self.renew()
            except Exception as exc:
                # Redis away: nobody can claim the message either. Never fatal to the job.
                log.warning("could not renew the job's claim: %s: %s", type(exc).__name__, exc)
                self.renewed = time.monotonic()

    async def __aenter__(self) -> Claim:
        self.task = asyncio.create_task(self._keep())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closed.set()
        if self.task is not None:
            await self.task


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names = StreamNames.from_settings(settings)
        self.consumer = settings.consumer_name
        self.stopping = asyncio.Event()
        # Cleared while parked (SIGUSR1): the batch in progress is finished and its job handed
        # back, then nothing is read from the stream until SIGUSR2; the heartbeat goes on.
        self.active = asyncio.Event()
        self.active.set()
        self.heartbeat = Path(settings.worker_heartbeat_file)
        # Longer than the XREADGROUP block, or every idle read would time out.
        self.redis: Redis = redis_client.connect(
            settings.redis_url.get_secret_value(),
            decode_responses=True,
            socket_timeout=settings.worker_block_ms / 1000 + 5,
        )
        self.pool: asyncpg.Pool | None = None
        self.pool_lock = asyncio.Lock()  # the backlog sampler asks for the pool concurrently
        self.renew_script = self.redis.register_script(_RENEW_CLAIM)
        self.reconciler = Reconciler(settings, self.redis, self.names)
        self.next_reconcile = 0.0  # monotonic time of the next reconcile attempt

    def stop(self) -> None:
        log.info("stop requested: finishing the current batch")
        self.stopping.set()

    def park(self) -> None:
        """SIGUSR1: a deploy's standby keeps this worker, idle, ready to resume at once."""
        if self.active.is_set():
            log.info("park requested: finishing the current batch, then idle until SIGUSR2")
        self.active.clear()

    def resume(self) -> None:
        """SIGUSR2: consume the stream again (a rollback within the standby)."""
        if not self.active.is_set():
            log.info("resumed: consuming again")
        self.active.set()

    @property
    def interrupted(self) -> bool:
        """The job in progress must end after its batch: stopping, or parked."""
        return self.stopping.is_set() or not self.active.is_set()

    def touch(self) -> None:
        self.heartbeat.touch()

    async def _pool(self) -> asyncpg.Pool:
        async with self.pool_lock:
            if self.pool is None:
                self.pool = await asyncpg.create_pool(
                    asyncpg_dsn(self.settings.database_url.get_secret_value()),
                    min_size=0,
                    # One for the job (or the reconciler), one for the backlog sampler.
                    max_size=2,
                    timeout=self.settings.db_timeout_s,
                    # A hung statement fails the attempt instead of holding the worker forever.
                    command_timeout=self.settings.worker_db_timeout_s,
                )
        return self.pool

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(
                self.names.stream, self.names.group, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGUSR1, self.park)
        loop.add_signal_handler(signal.SIGUSR2, self.resume)
        sampling_done = asyncio.Event()
        sampling: asyncio.Task[None] | None = None
        settings = self.settings
        if settings.worker_metrics_port:
            start_http_server(settings.worker_metrics_port)
            BUILD_INFO.labels(settings.version, settings.git_sha, settings.release).set(1)
            sampler = BacklogSampler(self.redis, self.names, self._pool, settings.db_timeout_s)
            sampling = asyncio.create_task(
                sampler.run(settings.worker_metrics_interval_s, sampling_done)
            )
        log.info("worker starting", extra={"consumer": self.consumer})
        promote = self.redis.register_script(_PROMOTE_DUE)
        outage = 0
        try:
            while not self.stopping.is_set():
                self.touch()
                if not self.active.is_set():  # parked: alive (heartbeat), reading nothing
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.active.wait(), timeout=PARKED_TICK_S)
                    continue
                try:
                    await self.ensure_group()
                    await promote(keys=[self.names.retry, self.names.stream], args=[_now_ms()])
                    await self.maybe_reconcile()
                    item = await self.next_message()
                    if item is not None:
                        await self.handle(*item)
                    outage = 0
                except (
                    RedisError,
                    OSError,
                    TimeoutError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                ) as exc:
                    # Redis or PostgreSQL is away: the message (if any) stays pending and will be
                    # claimed again; wait with backoff instead of crashing the container.
                    outage += 1
                    delay = min(30.0, 0.5 * 2**outage)
                    log.warning(
                        "dependency unavailable, retrying in %.1fs: %s: %s",
                        delay,
                        type(exc).__name__,  # a timeout's message is empty
                        exc,
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), timeout=delay)
        finally:
            # Stopped through an event, never cancelled, like the claim renewal: it finishes
            # its round before the clients it uses are closed.
            sampling_done.set()
            if sampling is not None:
                await sampling
            await self.redis.aclose()
            if self.pool is not None:
                await self.pool.close()
            log.info("worker stopped")

    async def maybe_reconcile(self) -> None:
        """Every LISTINGS_WORKER_RECONCILE_INTERVAL_S, unless another worker is at it."""
        now = time.monotonic()
        if now < self.next_reconcile:
            return
        self.next_reconcile = now + self.settings.worker_reconcile_interval_s
        try:
            await self.reconciler.run(await self._pool())
        except Exception as exc:
            # Never fatal: jobs go on; the next interval tries again.
            log.warning("reconcile failed: %s: %s", type(exc).__name__, exc)

    async def next_message(self) -> tuple[str, JobMessage, bool] | None:
        """The next message, and whether it was taken over from another consumer."""
        claimed: Any = await self.redis.xautoclaim(
            self.names.stream,
            self.names.group,
            self.consumer,
            min_idle_time=self.settings.worker_claim_idle_ms,
            start_id="0-0",
            count=1,
        )
        entries: list[tuple[str, dict[str, str] | None]] = claimed[1] if claimed else []
        takeover = bool(entries)
        if not entries:
            response: Any = await self.redis.xreadgroup(
                self.names.group,
                self.consumer,
                {self.names.stream: ">"},
                count=1,
                block=self.settings.worker_block_ms,
            )
            entries = response[0][1] if response else []
        else:
            log.info(
                "took over a pending job from another consumer", extra={"msg_id": entries[0][0]}
            )
        for msg_id, fields in entries:
            if not fields:  # trimmed away while pending: nothing left to do
                await self.ack(msg_id)
                continue
            return msg_id, JobMessage.from_fields(fields), takeover
        return None

    async def ack(self, msg_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.names.stream, self.names.group, msg_id)
            # Deleting acked entries keeps the stream (and Redis memory) bounded.
            pipe.xdel(self.names.stream, msg_id)
            await pipe.execute()

    async def requeue(self, msg_id: str, message: JobMessage, delay_ms: int) -> None:
        """Ack this delivery and schedule a fresh one (immediately when delay_ms is 0)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            if delay_ms:
                pipe.zadd(self.names.retry, {json.dumps(message.fields()): _now_ms() + delay_ms})
            else:
                pipe.xadd(self.names.stream, message.fields())  # type: ignore[arg-type]
            pipe.xack(self.names.stream, self.names.group, msg_id)
            pipe.xdel(self.names.stream, msg_id)
            await pipe.execute()

    async def handle(self, msg_id: str, message: JobMessage, takeover: bool = False) -> None:
        token = request_id_var.set(message.request_id or None)
        try:
            await self._handle(msg_id, message, takeover)
        finally:
            request_id_var.reset(token)

    async def _handle(self, msg_id: str, message: JobMessage, takeover: bool) -> None:
        pool = await self._pool()
        job_id = message.job_id
        async with pool.acquire() as conn, Claim(self, msg_id) as claim:
            attempt = await writer.start_job(conn, job_id, takeover=takeover)
            if attempt is None:
                # A duplicate message (its job runs or ran under another one) or a deleted job.
                log.info(
                    "job unknown, already running or finished, dropping message",
                    extra={"job_id": str(job_id)},
                )
                await self.ack(msg_id)
                return
            try:
                if attempt > self.settings.worker_max_attempts:
                    await self.dead_letter(
                        conn, msg_id, message, attempt, "too many attempts (worker crashes?)"
                    )
                    return
                log.info("job started", extra={"job_id": str(job_id), "attempt": attempt})
                try:
                    accepted, rejected = await self.process(conn, job_id, attempt, claim)
                except Interrupted:
                    if not await writer.hand_back_job(conn, job_id, attempt):
                        raise writer.Superseded(str(job_id)) from None
                    await self.requeue(msg_id, message, 0)
                    why = "on shutdown" if self.stopping.is_set() else "to park"
                    log.info(f"job handed back to the queue {why}", extra={"job_id": str(job_id)})
                    return
                except FeedFormatError as exc:
                    if not await writer.finish_job(
                        conn,
                        job_id,
                        attempt,
                        "failed",
                        [{"line": 1, "field": None, "message": str(exc)}],
                        str(exc),
                    ):
                        raise writer.Superseded(str(job_id)) from None
                    await self.ack(msg_id)
                    INGEST_JOBS.labels(status="failed").inc()
                    log.warning("job failed: feed unusable", extra={"job_id": str(job_id)})
                    return
                except writer.Superseded:
                    raise
                except Exception as exc:
                    await self.retry_or_dead_letter(conn, msg_id, message, attempt, exc)
                    return
            except writer.Superseded:
                # Another worker took the message over and runs the job now: its row, its
                # message. Leave both alone (no ack, no write).
                INGEST_JOBS.labels(status="superseded").inc()
                log.warning(
                    "job superseded: another worker took it over, stopping it here",
                    extra={"job_id": str(job_id), "attempt": attempt},
                )
                if not claim.lost:
                    await claim.renew()
                if not claim.lost:
                    # The message is still ours: the job was restarted through another
                    # message (a duplicate), which owns it now. Ours is redundant.
                    await self.ack(msg_id)
                    log.warning(
                        "job superseded through another message, dropping this duplicate",
                        extra={"job_id": str(job_id)},
                    )
                return
        await self.ack(msg_id)
        INGEST_JOBS.labels(status="done").inc()
        log.info(
            "job done",
            extra={"job_id": str(job_id), "accepted": accepted, "rejected": rejected},
        )

    async def retry_or_dead_letter(
        self,
        conn: asyncpg.Connection,
        msg_id: str,
        message: JobMessage,
        attempt: int,
        exc: Exception,
    ) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if attempt >= self.settings.worker_max_attempts:
            await self.dead_letter(conn, msg_id, message, attempt, reason)
            return
        delay = min(
            self.settings.worker_retry_max_ms,
            self.settings.worker_retry_base_ms * 2 ** (attempt - 1),
        )
        delay = int(delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not crypto
        if not await writer.requeue_job(conn, message.job_id, attempt, reason[:1000]):
            raise writer.Superseded(str(message.job_id))
        await self.requeue(msg_id, message, max(delay, 1))
        INGEST_JOBS.labels(status="retried").inc()
        log.warning(
            "job attempt failed, retrying",
            extra={
                "job_id": str(message.job_id),
                "attempt": attempt,
                "retry_in_ms": delay,
                "error": reason,
            },
        )

    async def dead_letter(
        self,
        conn: asyncpg.Connection,
        msg_id: str,
        message: JobMessage,
        attempt: int,
        reason: str,
    ) -> None:
        # The job row first: a superseded run must not put a running job in the dead letters.
        if not await writer.finish_job(conn, message.job_id, attempt, "failed", [], reason[:1000]):
            raise writer.Superseded(str(message.job_id))
        await self.redis.xadd(
            self.names.dead,
            {**message.fields(), "error": reason[:1000], "failed_at": str(_now_ms())},  # type: ignore[dict-item]
            maxlen=DEAD_LETTER_MAXLEN,
            approximate=True,
        )
        await self.ack(msg_id)
        INGEST_JOBS.labels(status="dead_lettered").inc()
        log.error("job dead-lettered", extra={"job_id": str(message.job_id), "error": reason})

    async def process(
        self, conn: asyncpg.Connection, job_id: UUID, attempt: int, claim: Claim
    ) -> tuple[int, int]:
        loaded = await writer.load_payload(conn, job_id)
        if loaded is None:
            raise LookupError(f"payload of job {job_id} is missing")
        content_type, body = loaded
        await writer.prepare(conn)
        batches = iter_batches(
            body, feed_format(content_type), self.settings.worker_batch_size, MAX_REPORTED_ERRORS
        )
        errors: list[dict[str, Any]] = []
        accepted = rejected = 0
        # The next batch is validated in a thread while PostgreSQL upserts the current one, so
        # Python's CPU time and the database's overlap instead of adding up.
        upcoming = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
        try:
            while (batch := await upcoming) is not None:
                upcoming = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
                refused = await self.flush(conn, job_id, attempt, batch)
                await claim.renew_if_due()
                accepted += batch.valid - len(refused)
                rejected += batch.rejected + len(refused)
                batch_errors: list[dict[str, Any]] = [e.as_dict() for e in batch.errors]
                if refused:
                    batch_errors += [
                        {"line": r.line, "field": None, "message": r.reason} for r in refused
                    ]
                    batch_errors.sort(key=lambda e: int(e["line"]))
                errors.extend(batch_errors)
                if self.interrupted:
                    raise Interrupted
        finally:
            if not upcoming.done():
                await asyncio.wait([upcoming])
            if not upcoming.cancelled():
                upcoming.exception()  # retrieved: an abandoned parse error is not worth a warning
        if not await writer.finish_job(conn, job_id, attempt, "done", errors[:MAX_REPORTED_ERRORS]):
            raise writer.Superseded(str(job_id))
        return accepted, rejected

    async def flush(
        self, conn: asyncpg.Connection, job_id: UUID, attempt: int, batch: Batch
    ) -> list[writer.Refused]:
        started = time.perf_counter()
        refused = await writer.write_batch(
            conn, job_id, attempt, batch.records, batch.lines, batch.valid, batch.rejected
        )
        INGEST_BATCH_SECONDS.observe(time.perf_counter() - started)
        INGEST_ROWS.labels(result="accepted").inc(batch.valid - len(refused))
        INGEST_ROWS.labels(result="rejected").inc(batch.rejected + len(refused))
        if refused:
            log.warning(
                "rows refused by the database",
                extra={"job_id": str(job_id), "lines": [r.line for r in refused][:20]},
            )
        self.touch()
        return refused


def _now_ms() -> int:
    return int(time.time() * 1000)


def run_worker(settings: Settings) -> None:
    async def main() -> None:
        # Inside the event loop, so that Sentry's asyncio integration can hook into it.
        init_sentry(settings, "worker")
        await Worker(settings).run()

    asyncio.run(main())

"""Batch writes of validated feed records: binary COPY into a temp table, then one upsert.

Row-by-row INSERTs would cap ingest at a few thousand rows/s; COPY plus a set-based
INSERT ... ON CONFLICT runs close to PostgreSQL's own limit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from listings.ingest.feed import COLUMNS, Record

STAGING_TABLE = "listings_staging"
_PG_TYPES = {
    "price": "bigint",
    "bedrooms": "integer",
    "bathrooms": "integer",
    "area_m2": "double precision",
    "latitude": "double precision",
    "longitude": "double precision",
    "listed_at": "timestamptz",
}
# Temporary: not WAL-logged, private to the connection, emptied at every commit.
CREATE_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGING_TABLE} ("
    + ", ".join(f"{c} {_PG_TYPES.get(c, 'text')}" for c in COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)
_COLS = ", ".join(COLUMNS)
_UPDATABLE = [c for c in COLUMNS if c not in ("source", "source_id")]
# The WHERE clause skips rows that did not change: replaying a feed writes (almost) nothing.
_SET = ", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATABLE)
_OLD = ", ".join(f"listings.{c}" for c in _UPDATABLE)
_NEW = ", ".join(f"EXCLUDED.{c}" for c in _UPDATABLE)
# Built from constant column names only, never from input. ORDER BY makes concurrent ingests of
# overlapping listings lock their rows in one order, so they wait for each other instead of
# deadlocking.
UPSERT = (
    f"INSERT INTO listings ({_COLS}) SELECT {_COLS} FROM {STAGING_TABLE} "  # noqa: S608  # nosec B608
    "ORDER BY source, source_id "
    f"ON CONFLICT (source, source_id) DO UPDATE SET {_SET}, updated_at = now() "
    f"WHERE ({_OLD}) IS DISTINCT FROM ({_NEW})"
)
CLEAR_STAGING = f"DELETE FROM {STAGING_TABLE}"  # noqa: S608 - constant name  # nosec B608
# Errors caused by the rows themselves: writing the same rows again fails the same way. asyncpg
# raises UnicodeEncodeError / OverflowError (ValueError, ArithmeticError) while encoding a value
# for COPY; PostgreSQL raises data exceptions (22xxx) and integrity violations (23xxx).
ROW_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    ValueError,
    OverflowError,
)


class Superseded(Exception):
    """Another worker started the job since this one did (its attempt number moved on).

    This worker must stop the job without touching the job row or acking the message.
    """


@dataclass(frozen=True, slots=True)
class Refused:
    line: int
    reason: str


async def prepare(conn: asyncpg.Connection) -> None:
    await conn.execute(CREATE_STAGING)


async def write_batch(
    conn: asyncpg.Connection,
    job_id: UUID,
    attempt: int,
    records: Sequence[Record],
    lines: Sequence[int],
    accepted: int,
    rejected: int,
) -> list[Refused]:
    """Upsert one batch and advance the job's counters in the same transaction.

    `accepted` counts feed rows, which can exceed len(records) when a batch repeated a listing.
    Only the run that started `attempt` may write: otherwise Superseded is raised and nothing of
    the batch is written. Rows the database refuses (a repeatable data error) are found by
    splitting the batch, returned with their feed line and counted as rejected; the other rows
    are stored.
    """
    refused: list[Refused] = []
    async with conn.transaction():
        if records:
            await _store(conn, records, lines, refused, last=True)
        await _advance(conn, job_id, attempt, accepted - len(refused), rejected + len(refused))
    return refused


async def _advance(
    conn: asyncpg.Connection, job_id: UUID, attempt: int, accepted: int, rejected: int
) -> None:
    status = await conn.execute(
        "UPDATE ingest_jobs SET accepted = accepted + $3, rejected = rejected + $4, "
        "updated_at = now() WHERE id = $1 AND attempts = $2 AND status = 'running'",
        job_id,
        attempt,
        accepted,
        rejected,
    )
    if status != "UPDATE 1":
        raise Superseded(str(job_id))  # raised inside the transaction: the batch rolls back


async def _store(
    conn: asyncpg.Connection,
    records: Sequence[Record],
    lines: Sequence[int],
    refused: list[Refused],
    last: bool = False,
) -> None:
    """Upsert rows in a savepoint; if they fail with a row error, halve them until the bad rows
    are alone (k bad rows among n cost about 2k*log2(n) small writes) and store the rest."""
    try:
        async with conn.transaction():  # a savepoint: a failure leaves the batch usable
            await conn.copy_records_to_table(STAGING_TABLE, records=records, columns=COLUMNS)
            await conn.execute(UPSERT)
            if not last:  # another part follows through the same staging table
                await conn.execute(CLEAR_STAGING)
    except ROW_ERRORS as exc:
        if len(records) == 1:
            refused.append(Refused(lines[0], _reason(exc)))
            return
        middle = len(records) // 2
        await _store(conn, records[:middle], lines[:middle], refused)
        await _store(conn, records[middle:], lines[middle:], refused)


def _reason(exc: BaseException) -> str:
    """Why a row was refused, without echoing any value (rows may hold personal data)."""
    if isinstance(exc, UnicodeError):
        return "is not valid text"
    if isinstance(exc, OverflowError):
        return f"could not be stored: {exc}"  # asyncpg's codec messages carry no value
    if isinstance(exc, asyncpg.PostgresError):
        return f"was refused by the database ({exc.sqlstate})"
    return f"could not be stored ({type(exc).__name__})"


async def start_job(conn: asyncpg.Connection, job_id: UUID, takeover: bool = True) -> int | None:
    """Mark the job running and reset its counters (a re-run starts from zero).

    A first delivery of a message (takeover False) starts only a queued job: a job already
    running belongs to another message (a duplicate from the reconciler or an API that stalled
    before XADD), so the duplicate is dropped instead of restarting it. A message taken over from
    a dead or stalled consumer (takeover True) restarts a running job too.

    Returns the attempt number, or None when the job is unknown, already finished, or (first
    delivery) already running. The attempt
    number fences the run: every later write for it applies only while the job is still running
    with this attempt number (a later start_job increments it; a hand-back by the current owner
    sets the job queued), so a run that another worker took over can no longer change the job.
    """
    attempts: int | None = await conn.fetchval(
        "UPDATE ingest_jobs SET status = 'running', attempts = attempts + 1, accepted = 0, "
        "rejected = 0, errors = '[]', last_error = NULL, started_at = now(), updated_at = now() "
        "WHERE id = $1 AND status = ANY($2::text[]) RETURNING attempts",
        job_id,
        ["queued", "running"] if takeover else ["queued"],
    )
    return attempts


async def hand_back_job(conn: asyncpg.Connection, job_id: UUID, attempt: int) -> bool:
    """Put a job interrupted by a graceful shutdown back to queued; False if superseded.

    The attempt it started is given back: a worker told to stop is not a failed attempt, so
    rolling restarts during a long ingest never push a healthy job into the dead-letter stream.
    """
    status = await conn.execute(
        "UPDATE ingest_jobs SET status = 'queued', attempts = GREATEST(attempts - 1, 0), "
        "updated_at = now() WHERE id = $1 AND attempts = $2 AND status = 'running'",
        job_id,
        attempt,
    )
    return bool(status == "UPDATE 1")


async def requeue_job(
    conn: asyncpg.Connection, job_id: UUID, attempt: int, last_error: str
) -> bool:
    """Set a failed attempt's job back to queued for a retry; False if superseded."""
    status = await conn.execute(
        "UPDATE ingest_jobs SET status = 'queued', last_error = $3, updated_at = now() "
        "WHERE id = $1 AND attempts = $2 AND status = 'running'",
        job_id,
        attempt,
        last_error,
    )
    return bool(status == "UPDATE 1")


async def load_payload(conn: asyncpg.Connection, job_id: UUID) -> tuple[str, bytes] | None:
    row = await conn.fetchrow(
        "SELECT j.content_type, p.body FROM ingest_jobs j "
        "JOIN ingest_payloads p ON p.job_id = j.id WHERE j.id = $1",
        job_id,
    )
    return (row["content_type"], row["body"]) if row else None


async def finish_job(
    conn: asyncpg.Connection,
    job_id: UUID,
    attempt: int,
    status: str,
    errors: list[dict[str, Any]],
    last_error: str | None = None,
) -> bool:
    """Record the outcome and drop the payload; False (nothing changed) if superseded."""
    async with conn.transaction():
        updated = await conn.execute(
            "UPDATE ingest_jobs SET status = $3, errors = $4::jsonb, last_error = $5, "
            "finished_at = now(), updated_at = now() "
            "WHERE id = $1 AND attempts = $2 AND status = 'running'",
            job_id,
            attempt,
            status,
            json.dumps(errors),
            last_error,
        )
        if updated != "UPDATE 1":
            return False
        await conn.execute("DELETE FROM ingest_payloads WHERE job_id = $1", job_id)
    return True

"""Batch writes of validated feed records: binary COPY into a temp table, then one upsert.

Row-by-row INSERTs would cap ingest at a few thousand rows/s; COPY plus a set-based
INSERT ... ON CONFLICT runs close to PostgreSQL's own limit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
# Built from constant column names only, never from input.
UPSERT = (
    f"INSERT INTO listings ({_COLS}) SELECT {_COLS} FROM {STAGING_TABLE} "  # noqa: S608
    f"ON CONFLICT (source, source_id) DO UPDATE SET {_SET}, updated_at = now() "
    f"WHERE ({_OLD}) IS DISTINCT FROM ({_NEW})"
)


async def prepare(conn: asyncpg.Connection) -> None:
    await conn.execute(CREATE_STAGING)


async def write_batch(
    conn: asyncpg.Connection,
    job_id: UUID,
    records: Sequence[Record],
    accepted: int,
    rejected: int,
) -> None:
    """Upsert one batch and advance the job's counters in the same transaction.

    `accepted` counts feed rows, which can exceed len(records) when a batch repeated a listing.
    """
    async with conn.transaction():
        if records:
            await conn.copy_records_to_table(STAGING_TABLE, records=records, columns=COLUMNS)
            await conn.execute(UPSERT)
        await conn.execute(
            "UPDATE ingest_jobs SET accepted = accepted + $2, rejected = rejected + $3, "
            "updated_at = now() WHERE id = $1",
            job_id,
            accepted,
            rejected,
        )


async def start_job(conn: asyncpg.Connection, job_id: UUID) -> int | None:
    """Mark the job running and reset its counters (a re-run starts from zero).

    Returns the attempt number, or None when the job is unknown or already finished.
    """
    attempts: int | None = await conn.fetchval(
        "UPDATE ingest_jobs SET status = 'running', attempts = attempts + 1, accepted = 0, "
        "rejected = 0, errors = '[]', last_error = NULL, started_at = now(), updated_at = now() "
        "WHERE id = $1 AND status IN ('queued', 'running') RETURNING attempts",
        job_id,
    )
    return attempts


async def hand_back_job(conn: asyncpg.Connection, job_id: UUID) -> None:
    """Put a job interrupted by a graceful shutdown back to queued.

    The attempt it started is given back: a worker told to stop is not a failed attempt, so
    rolling restarts during a long ingest never push a healthy job into the dead-letter stream.
    """
    await conn.execute(
        "UPDATE ingest_jobs SET status = 'queued', attempts = GREATEST(attempts - 1, 0), "
        "updated_at = now() WHERE id = $1 AND status = 'running'",
        job_id,
    )


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
    status: str,
    errors: list[dict[str, Any]],
    last_error: str | None = None,
) -> None:
    async with conn.transaction():
        await conn.execute(
            "UPDATE ingest_jobs SET status = $2, errors = $3::jsonb, last_error = $4, "
            "finished_at = now(), updated_at = now() WHERE id = $1",
            job_id,
            status,
            json.dumps(errors),
            last_error,
        )
        await conn.execute("DELETE FROM ingest_payloads WHERE job_id = $1", job_id)

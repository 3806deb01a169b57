"""Ingest jobs as the API sees them: create with payload, read status."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from listings.tables import ingest_jobs, ingest_payloads


async def create_job(
    engine: AsyncEngine, job_id: UUID, content_type: str, request_id: str, body: bytes
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            ingest_jobs.insert().values(
                id=job_id, status="queued", content_type=content_type, request_id=request_id
            )
        )
        await conn.execute(ingest_payloads.insert().values(job_id=job_id, body=body))


async def fail_unqueued_job(engine: AsyncEngine, job_id: UUID, reason: str) -> None:
    """The job row exists but never reached the queue: say so instead of leaving it queued."""
    async with engine.begin() as conn:
        await conn.execute(
            update(ingest_jobs)
            .where(ingest_jobs.c.id == job_id)
            .values(
                status="failed", last_error=reason, finished_at=func.now(), updated_at=func.now()
            )
        )
        await conn.execute(ingest_payloads.delete().where(ingest_payloads.c.job_id == job_id))


async def get_job(engine: AsyncEngine, job_id: UUID) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        result = await conn.execute(
            select(
                ingest_jobs.c.id,
                ingest_jobs.c.status,
                ingest_jobs.c.accepted,
                ingest_jobs.c.rejected,
                ingest_jobs.c.errors,
                ingest_jobs.c.attempts,
                ingest_jobs.c.last_error,
                ingest_jobs.c.created_at,
                ingest_jobs.c.started_at,
                ingest_jobs.c.finished_at,
            ).where(ingest_jobs.c.id == job_id)
        )
        row = result.mappings().first()
    return dict(row) if row else None

"""Feed ingest: accept a CSV/NDJSON body, park it in PostgreSQL, queue the job id."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from listings.api.auth import ApiKeyOwner
from listings.api.errors import ApiError
from listings.api.feed_check import charset_problem, find_invalid_utf8
from listings.api.state import AppState, get_state
from listings.ingest.feed import FeedFormatError, check_feed_head, feed_format
from listings.ingest.jobs import create_job, fail_unqueued_job, get_job
from listings.ingest.queue import JobMessage, enqueue
from listings.logs import request_id_var
from listings.metrics import INGEST_JOBS

router = APIRouter(prefix="/api/v1/ingest", tags=["ingest"])
State = Annotated[AppState, Depends(get_state)]
log = logging.getLogger("listings.ingest")


async def _read_limited(request: Request, limit: int) -> bytes:
    too_big = ApiError(413, "payload too large", f"a feed may be at most {limit} bytes")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # chunked bodies have no Content-Length to refuse up front
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("", status_code=202)
async def submit(request: Request, owner: ApiKeyOwner, state: State) -> JSONResponse:
    content_type = request.headers.get("content-type", "")
    try:
        fmt = feed_format(content_type)
    except FeedFormatError as exc:
        raise ApiError(415, "unsupported media type", str(exc)) from None
    if problem := charset_problem(content_type):
        raise ApiError(415, "unsupported media type", problem)
    body = await _read_limited(request, state.settings.max_feed_bytes)
    if bad := await find_invalid_utf8(body):
        raise ApiError(
            400,
            "not UTF-8",
            bad.message,
            extra={"line": bad.line, "offset": bad.offset},
        )
    try:
        check_feed_head(body, fmt)
    except FeedFormatError as exc:
        raise ApiError(400, "not a feed", str(exc)) from None
    job_id = uuid.uuid4()
    request_id = request_id_var.get() or ""
    await create_job(state.engine, job_id, content_type.split(";")[0].strip(), request_id, body)
    try:
        await enqueue(state.redis, state.names, JobMessage(job_id, request_id))
    except RedisError as exc:
        await fail_unqueued_job(state.engine, job_id, f"queue unavailable: {type(exc).__name__}")
        raise ApiError(
            503, "queue unavailable", "Redis did not accept the job; retry later"
        ) from None
    INGEST_JOBS.labels(status="queued").inc()
    log.info(
        "ingest job queued",
        extra={"job_id": str(job_id), "bytes": len(body), "format": fmt, "api_key_name": owner},
    )
    return JSONResponse(
        {"job_id": str(job_id), "status": "queued"},
        status_code=202,
        headers={"Location": f"/api/v1/ingest/{job_id}"},
    )


@router.get("/{job_id}")
async def status(job_id: uuid.UUID, _owner: ApiKeyOwner, state: State) -> dict[str, Any]:
    """A job's progress and its first row errors; needs an API key, like submitting."""
    job = await get_job(state.engine, job_id)
    if job is None:
        raise ApiError(404, "not found", f"no ingest job {job_id}")
    return {
        "job_id": str(job["id"]),
        "status": job["status"],
        "accepted": job["accepted"],
        "rejected": job["rejected"],
        "errors": job["errors"],
        "attempts": job["attempts"],
        "error": job["last_error"],
        "created_at": job["created_at"],
        "started_at": job["started_at"],
        "finished_at": job["finished_at"],
    }

"""Operational endpoints: liveness, readiness, metrics, version."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from listings.api.state import AppState, get_state
from listings.metrics import render_latest

router = APIRouter()
CHECK_TIMEOUT_S = 2.0
State = Annotated[AppState, Depends(get_state)]


@router.get("/health", include_in_schema=False)
async def health() -> dict[str, str]:
    """Liveness only: touches no dependency, so a database outage never restarts the API."""
    return {"status": "ok"}


async def _probe(probe: Coroutine[Any, Any, str]) -> tuple[bool, str]:
    try:
        return True, await asyncio.wait_for(probe, timeout=CHECK_TIMEOUT_S)
    except TimeoutError:
        return False, f"no answer within {CHECK_TIMEOUT_S:.0f}s"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {str(exc)[:200]}"


async def _schema_revision(state: AppState) -> str:
    async with state.engine.connect() as conn:
        try:
            result = await conn.execute(text("SELECT version_num FROM alembic_version"))
        except ProgrammingError:  # no alembic_version table: never migrated
            return "none"
        return result.scalar_one_or_none() or "none"


async def _redis(state: AppState) -> str:
    await state.redis.ping()
    return "ok"


@router.get("/ready", include_in_schema=False)
async def ready(state: State) -> JSONResponse:
    """200 only when PostgreSQL and Redis answer and the schema is at this release's head.

    A schema newer than this release (a revision it does not know) also counts as ready: after a
    rollback the previous release runs on the schema the newer one migrated to, which the
    expand/contract rule keeps compatible (docs/runbook.md). An older schema is not ready.
    """
    (pg_ok, revision), (_, redis_result) = await asyncio.gather(
        _probe(_schema_revision(state)), _probe(_redis(state))
    )
    checks = {"postgres": "ok" if pg_ok else revision, "redis": redis_result}
    notes: dict[str, str] = {}
    if not pg_ok:
        checks["schema"] = "unknown: postgres is unavailable"
    elif revision == state.head_revision:
        checks["schema"] = "ok"
    elif revision != "none" and state.known_revisions and revision not in state.known_revisions:
        checks["schema"] = "ok"
        notes["schema"] = (
            f"at {revision}, newer than this release's {state.head_revision} (expand/contract)"
        )
    else:
        checks["schema"] = f"at {revision}, expected {state.head_revision}: run `listings migrate`"
    failing = [name for name, result in checks.items() if result != "ok"]
    if failing:
        body = {
            "status": "unavailable",
            "error": "not ready: " + ", ".join(failing),
            "detail": checks,
            "failing": failing,
        }
        return JSONResponse(body, status_code=503)
    body_ok: dict[str, object] = {"status": "ok", "detail": checks}
    if notes:
        body_ok["notes"] = notes
    return JSONResponse(body_ok)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    body, content_type = render_latest()
    return Response(body, media_type=content_type)


@router.get("/api/v1/version")
async def version(state: State) -> dict[str, str]:
    s = state.settings
    return {"version": s.version, "git_sha": s.git_sha, "release": s.release}

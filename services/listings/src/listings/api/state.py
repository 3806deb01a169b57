"""What every request handler needs, built once per process by the app factory."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from listings.ingest.queue import StreamNames
from listings.settings import Settings


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    redis: Redis
    names: StreamNames
    head_revision: str
    # Revisions of this release's migrations; a database at an unknown one was migrated by a
    # newer release (expand/contract keeps this one working on it: rollbacks rely on that).
    known_revisions: frozenset[str] = frozenset()


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.listings
    return state

"""Helpers shared by the service's integration tests (not fixtures: plain functions)."""

from __future__ import annotations

import os
from typing import Any

from listings.settings import Settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


def settings_env(settings: Settings, **overrides: object) -> dict[str, str]:
    """The settings as LISTINGS_* variables, for a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTINGS_")}
    values = settings.model_dump()
    for name in ("database_url", "redis_url", "api_key_pepper"):
        values[name] = getattr(settings, name).get_secret_value()
    values.update(overrides)
    for name, value in values.items():
        if value is not None:
            env[f"LISTINGS_{name.upper()}"] = str(value)
    return env


async def job_row(engine: AsyncEngine, job_id: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    text("SELECT status, accepted, attempts FROM ingest_jobs WHERE id = :id"),
                    {"id": job_id},
                )
            )
            .mappings()
            .one()
        )
    return dict(row)

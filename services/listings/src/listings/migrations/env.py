"""Alembic environment: runs migrations over asyncpg with the service's own database URL."""

from __future__ import annotations

import asyncio

from alembic import context
from listings.tables import metadata
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

# Any constant works; it only has to be the same for every process that migrates this database.
MIGRATION_LOCK_ID = 741_852_963


def _run(connection: Connection) -> None:
    # Two `listings migrate` started at once (two deploys, a retry) must not both run DDL.
    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


url = context.config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("no database URL given to the migrations")
asyncio.run(_run_async(url))

"""The API's database engine: async SQLAlchemy on asyncpg, reconnecting after outages."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from listings.settings import Settings


def create_engine(settings: Settings) -> AsyncEngine:
    # pre_ping throws away connections that died while PostgreSQL was down, so /ready and the
    # API recover on their own when it comes back.
    return create_async_engine(
        settings.database_url.get_secret_value(),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        pool_timeout=settings.db_timeout_s,
        connect_args={"timeout": settings.db_timeout_s, "command_timeout": 60},
    )


def asyncpg_dsn(database_url: str) -> str:
    """The same URL for plain asyncpg (the worker uses COPY, which SQLAlchemy does not expose)."""
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)

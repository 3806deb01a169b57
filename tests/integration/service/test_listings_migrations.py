import asyncio

import pytest
from listings import migrate
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = pytest.mark.integration

TABLES = {"listings", "api_keys", "ingest_jobs", "ingest_payloads"}


async def tables_and_indexes(url: str) -> tuple[set[str], set[str], str | None]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            tables = set(
                (
                    await conn.execute(
                        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                    )
                ).scalars()
            )
            indexes = set(
                (
                    await conn.execute(
                        text("SELECT indexname FROM pg_indexes WHERE tablename = 'listings'")
                    )
                ).scalars()
            )
            revision = None
            if "alembic_version" in tables:
                revision = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar_one_or_none()
    finally:
        await engine.dispose()
    return tables, indexes, revision


async def test_migrations_go_down_to_nothing_and_up_again(migrated: str) -> None:
    tables, indexes, revision = await tables_and_indexes(migrated)
    assert tables >= TABLES
    assert revision == migrate.head_revision()
    assert {
        "uq_listings_source_source_id",
        "ix_listings_search",
        "ix_listings_city_id",
        "ix_listings_price_id",
    } <= indexes

    # Alembic's env.py runs its own event loop: keep it off this test's loop.
    await asyncio.to_thread(migrate.downgrade, migrated, "base")
    tables, indexes, revision = await tables_and_indexes(migrated)
    assert not (tables & TABLES)
    assert revision is None

    await asyncio.to_thread(migrate.upgrade, migrated, "head")
    tables, _, revision = await tables_and_indexes(migrated)
    assert tables >= TABLES
    assert revision == migrate.head_revision()

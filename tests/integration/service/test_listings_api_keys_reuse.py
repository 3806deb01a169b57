"""API key names are unique among active keys only (migration 0002_api_key_names)."""

import asyncio
import secrets
from collections.abc import Callable
from subprocess import CompletedProcess

import httpx
import pytest
from listings import apikeys, migrate
from listings.settings import Settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.integration

REVISION = "0002_api_key_names"


async def test_revoke_then_create_with_the_same_name_works(
    client: httpx.AsyncClient, cli: Callable[..., CompletedProcess[str]]
) -> None:
    name = f"reuse-{secrets.token_hex(3)}"
    first = cli("apikey", "create", "--name", name)
    assert first.returncode == 0, first.stderr
    assert cli("apikey", "revoke", "--name", name).returncode == 0
    second = cli("apikey", "create", "--name", name)
    assert second.returncode == 0, second.stderr
    old_key, new_key = first.stdout.split()[0], second.stdout.split()[0]
    assert old_key != new_key

    url = "/api/v1/ingest/00000000-0000-0000-0000-000000000000"
    assert (
        await client.get(url, headers={"Authorization": f"Bearer {old_key}"})
    ).status_code == 401
    assert (
        await client.get(url, headers={"Authorization": f"Bearer {new_key}"})
    ).status_code == 404

    # And once more: any number of revoked keys may share the name.
    assert cli("apikey", "revoke", "--name", name).returncode == 0
    assert cli("apikey", "create", "--name", name).returncode == 0


async def test_two_active_keys_with_one_name_are_refused_clearly(
    engine: AsyncEngine, settings: Settings, cli: Callable[..., CompletedProcess[str]]
) -> None:
    name = f"twice-{secrets.token_hex(3)}"
    assert cli("apikey", "create", "--name", name).returncode == 0
    again = cli("apikey", "create", "--name", name)
    assert again.returncode == 1
    assert f"an active API key named '{name}' already exists" in again.stderr
    assert "revoke it first" in again.stderr
    assert "Traceback" not in again.stderr

    async with engine.begin() as conn:
        with pytest.raises(apikeys.ApiKeyError, match="already exists"):
            await apikeys.create_key(conn, settings.pepper_bytes(), name)


async def test_the_migration_downgrades_with_reused_names_and_upgrades_again(
    migrated: str, engine: AsyncEngine, settings: Settings
) -> None:
    name = f"mig-{secrets.token_hex(3)}"
    pepper = settings.pepper_bytes()
    for _ in range(3):  # two revoked keys and one active key, all named `name`
        async with engine.begin() as conn:
            await apikeys.create_key(conn, pepper, name)
        async with engine.begin() as conn:
            await apikeys.revoke_key(conn, name)
    async with engine.begin() as conn:
        active = await apikeys.create_key(conn, pepper, name)
    await engine.dispose()  # no pooled connection may hold locks on api_keys during DDL

    try:
        await asyncio.to_thread(migrate.downgrade, migrated, "0001")
        async with engine.connect() as conn:
            names = (
                await conn.execute(
                    text("SELECT name FROM api_keys WHERE name LIKE :p ORDER BY id"),
                    {"p": f"{name}%"},
                )
            ).scalars()
            names_list = list(names)
            assert len(names_list) == 4
            assert len(set(names_list)) == 4
            assert names_list[-1] == name  # the active key keeps its name
            assert await apikeys.key_owner(conn, pepper, active) == name
        await engine.dispose()
    finally:
        await asyncio.to_thread(migrate.upgrade, migrated, "head")
    assert migrate.head_revision() == REVISION
    async with engine.begin() as conn:
        assert await apikeys.revoke_key(conn, name)
        await apikeys.create_key(conn, pepper, name)

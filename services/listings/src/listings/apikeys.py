"""API keys: random tokens shown once, stored only as HMAC-SHA256(pepper, key)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from listings.tables import api_keys

KEY_PREFIX = "slw_"


class ApiKeyError(Exception):
    """An API key operation cannot be done as asked."""


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(pepper: bytes, key: str) -> str:
    # A pepper kept outside the database means a leaked table alone cannot be brute-forced.
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


async def create_key(conn: AsyncConnection, pepper: bytes, name: str) -> str:
    name = name.strip()
    if not name:
        raise ApiKeyError("an API key needs a non-empty --name")
    key = generate_key()
    try:
        await conn.execute(api_keys.insert().values(name=name, key_hash=hash_key(pepper, key)))
    except IntegrityError:
        # Only active keys hold their name (a partial unique index): a revoked name is free.
        raise ApiKeyError(
            f"an active API key named {name!r} already exists; revoke it first "
            f"(apikey revoke --name {name}) or pick another name"
        ) from None
    return key


async def revoke_key(conn: AsyncConnection, name: str) -> bool:
    """True when an active key of that name was revoked."""
    result = await conn.execute(
        update(api_keys)
        .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    return bool(result.rowcount)


async def key_owner(conn: AsyncConnection, pepper: bytes, key: str) -> str | None:
    """Name of the active key matching `key`, or None."""
    result = await conn.execute(
        select(api_keys.c.name).where(
            api_keys.c.key_hash == hash_key(pepper, key), api_keys.c.revoked_at.is_(None)
        )
    )
    return result.scalar_one_or_none()

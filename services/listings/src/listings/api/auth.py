"""API-key authentication: `Authorization: Bearer <key>`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from listings.api.errors import ApiError
from listings.api.state import AppState, get_state
from listings.apikeys import key_owner

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def require_api_key(request: Request, state: Annotated[AppState, Depends(get_state)]) -> str:
    """Name of the calling key; 401 JSON when it is missing, malformed, unknown or revoked."""
    return await _check_key(request, state)


async def optional_api_key(
    request: Request, state: Annotated[AppState, Depends(get_state)]
) -> str | None:
    """None for an anonymous request (no Authorization header); otherwise as `require_api_key`.

    A key that is sent but wrong is still 401: silently answering as anonymous would hide a
    revoked or mistyped key from its owner.
    """
    if "authorization" not in request.headers:
        return None
    return await _check_key(request, state)


async def _check_key(request: Request, state: AppState) -> str:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(
            401, "unauthorized", "send an API key as 'Authorization: Bearer <key>'", _CHALLENGE
        )
    async with state.engine.connect() as conn:
        owner = await key_owner(conn, state.settings.pepper_bytes(), key.strip())
    if owner is None:
        raise ApiError(401, "unauthorized", "the API key is unknown or revoked", _CHALLENGE)
    return owner


ApiKeyOwner = Annotated[str, Depends(require_api_key)]
OptionalApiKeyOwner = Annotated[str | None, Depends(optional_api_key)]

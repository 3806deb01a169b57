"""Opaque keyset-pagination cursors: urlsafe base64 of a small JSON document."""

from __future__ import annotations

import base64
import binascii
import json

CURSOR_VERSION = 1
MAX_CURSOR_LENGTH = 200
MAX_ID = 2**63 - 1  # listings.id is a bigint


class InvalidCursorError(ValueError):
    """The cursor was not produced by this service (or was altered)."""


def encode_cursor(last_id: int) -> str:
    raw = json.dumps({"v": CURSOR_VERSION, "id": last_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Return the id after which the next page starts."""
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise InvalidCursorError("cursor is empty or too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursorError("cursor is not valid") from exc
    if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION:
        raise InvalidCursorError("cursor is not valid")
    last_id = data.get("id")
    if type(last_id) is not int or not 1 <= last_id <= MAX_ID:
        raise InvalidCursorError("cursor is not valid")
    return last_id

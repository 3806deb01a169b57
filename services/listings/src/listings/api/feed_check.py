"""Checks the API makes on a feed body before it is queued (the worker trusts them).

The whole body is checked, not only its head: a job accepted with 202 must not fail later in
the worker for a reason the API could have named up front.
"""

from __future__ import annotations

import asyncio
import codecs
from dataclasses import dataclass
from email.message import Message

CHUNK_BYTES = 1 << 20
# Below this, decoding takes well under a millisecond: not worth a thread hop.
INLINE_BYTES = 1 << 20
UTF8_NAMES = frozenset({"utf-8", "utf8"})


@dataclass(frozen=True, slots=True)
class InvalidUtf8:
    """Where the first byte that is not UTF-8 sits in the body."""

    offset: int  # 0-based byte offset in the body
    line: int  # 1-based line number (lines end with \n)
    byte: int
    reason: str

    @property
    def message(self) -> str:
        return (
            f"the feed is not valid UTF-8: byte 0x{self.byte:02X} at byte offset {self.offset} "
            f"(line {self.line}) is invalid ({self.reason}); send the feed encoded as UTF-8"
        )


def first_invalid_utf8(body: bytes) -> InvalidUtf8 | None:
    """The first position where `body` stops being UTF-8, or None when all of it is UTF-8.

    Decoded in chunks so a large feed never costs a second full-size copy as text.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    view = memoryview(body)
    size = len(body)
    for start in range(0, size, CHUNK_BYTES):
        end = min(start + CHUNK_BYTES, size)
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(view[start:end], final=end == size)
        except UnicodeDecodeError as exc:
            offset = start - pending + exc.start
            return InvalidUtf8(
                offset=offset,
                line=body.count(b"\n", 0, offset) + 1,
                byte=body[offset],
                reason=str(exc.reason),
            )
    return None


async def find_invalid_utf8(body: bytes) -> InvalidUtf8 | None:
    """`first_invalid_utf8`, off the event loop for large bodies (up to max_feed_bytes)."""
    if len(body) <= INLINE_BYTES:
        return first_invalid_utf8(body)
    return await asyncio.to_thread(first_invalid_utf8, body)


def charset_problem(content_type: str) -> str | None:
    """Why the Content-Type's charset parameter is refused, or None when it is fine.

    Feeds are read as UTF-8 only; another declared charset is refused rather than transcoded,
    so what is stored is always exactly what the sender sent.
    """
    message = Message()
    message["content-type"] = content_type
    charset = message.get_param("charset")
    if charset is None:
        return None
    if not isinstance(charset, str):  # RFC 2231 form: (charset, language, value)
        charset = str(charset[2])
    name = charset.strip().strip('"').lower()
    if name in UTF8_NAMES:
        return None
    return (
        f"charset {charset.strip()!r} is not supported: feeds must be UTF-8; convert the feed "
        "to UTF-8 and send 'charset=utf-8' or no charset parameter"
    )

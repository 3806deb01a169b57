"""Waiting on a condition instead of sleeping a guessed time.

    container = wait_for(find_container, what="the api container")
    wait_for(ready, what="/ready through nginx", timeout=180, details=lambda: logs(name))

`condition` is called until it returns a truthy value, which is returned; with `until`, until
`until(value)` holds for the value it returns (so a failure can show a whole state, not just
False):

    job = wait_for(lambda: get_job(job_id), until=lambda j: j["status"] == "done", what=...)

When `timeout` seconds pass first, the test fails with an AssertionError that names what was
waited for, how long, and the last value seen (and `details()`, such as a container's logs).
An exception of a type in `ignoring` counts as "not yet" (a port that does not answer yet); any
other exception ends the wait at once, so a condition can also fail the test early (a container
that died).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# How much of the last value a failure shows: enough to see the state, not a whole page.
SHOWN = 2000


class _Deadline:
    """The time left to one wait, and the failure that ends it."""

    def __init__(
        self, what: str, timeout: float, interval: float, details: Callable[[], str] | None
    ) -> None:
        self.what, self.timeout, self.interval, self.details = what, timeout, interval, details
        self.end = time.monotonic() + timeout

    def pause(self, last: object) -> float:
        """Seconds to sleep before the next try; the test fails once the time is up."""
        remaining = self.end - time.monotonic()
        if remaining > 0:
            return min(self.interval, remaining)
        shown = repr(last)
        if len(shown) > SHOWN:
            shown = shown[: SHOWN // 2] + " ... " + shown[-SHOWN // 2 :]
        message = f"{self.what}: not within {self.timeout:g}s (last: {shown})"
        if self.details is not None:
            message += "\n" + self.details()
        raise AssertionError(message) from (last if isinstance(last, Exception) else None)


def wait_for(
    condition: Callable[[], T],
    *,
    what: str,
    timeout: float = 60.0,
    interval: float = 0.5,
    until: Callable[[T], object] | None = None,
    ignoring: tuple[type[Exception], ...] = (),
    details: Callable[[], str] | None = None,
) -> T:
    """condition()'s first truthy value (or first one `until` accepts), tried every `interval`
    seconds (see the module doc)."""
    deadline = _Deadline(what, timeout, interval, details)
    while True:
        try:
            value = condition()
        except ignoring as exc:
            last: object = exc
        else:
            if value if until is None else until(value):
                return value
            last = value
        time.sleep(deadline.pause(last))


async def wait_for_async(
    condition: Callable[[], Awaitable[T]],
    *,
    what: str,
    timeout: float = 60.0,
    interval: float = 0.05,
    until: Callable[[T], object] | None = None,
    ignoring: tuple[type[Exception], ...] = (),
    details: Callable[[], str] | None = None,
) -> T:
    """wait_for for coroutines: `await condition()` until it is done, the event loop free
    between tries."""
    deadline = _Deadline(what, timeout, interval, details)
    while True:
        try:
            value = await condition()
        except ignoring as exc:
            last: object = exc
        else:
            if value if until is None else until(value):
                return value
            last = value
        await asyncio.sleep(deadline.pause(last))

"""Request id, request log line and HTTP metrics, as one plain ASGI middleware.

Plain ASGI (not BaseHTTPMiddleware) so streaming bodies are not buffered and the overhead per
request stays small.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from listings.logs import request_id_var
from listings.metrics import DB_POOL, HTTP_IN_FLIGHT, HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger("listings.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_QUIET_ROUTES = frozenset({"/health", "/metrics"})


def incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            # Anything odd is replaced rather than echoed: it ends up in logs and headers.
            if _VALID_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, pool_stats: Any = None) -> None:
        self.app = app
        self.pool_stats = pool_stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope["headers"])
        token = request_id_var.set(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            HTTP_IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            # The template ("/api/v1/listings/{listing_id}"), never the raw path: bounded labels.
            template = getattr(route, "path", None) or "<unmatched>"
            labels = (scope["method"], template, str(status))
            HTTP_REQUESTS.labels(*labels).inc()
            HTTP_LATENCY.labels(*labels).observe(elapsed)
            if self.pool_stats is not None:
                size, in_use = self.pool_stats()
                DB_POOL.labels(state="open").set(size)
                DB_POOL.labels(state="in_use").set(in_use)
            log.log(
                logging.DEBUG if template in _QUIET_ROUTES else logging.INFO,
                "request",
                extra={
                    "method": scope["method"],
                    "route": template,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)

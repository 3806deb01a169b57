"""Request id, request log line, HTTP metrics and the 500 answer, as one plain ASGI middleware.

Plain ASGI (not BaseHTTPMiddleware) so streaming bodies are not buffered and the overhead per
request stays small.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Collection
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from listings.api.errors import internal_error
from listings.logs import request_id_var
from listings.metrics import DB_POOL, HTTP_IN_FLIGHT, HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger("listings.access")
error_log = logging.getLogger("listings.api")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_QUIET_ROUTES = frozenset({"/health", "/metrics"})
# Metric labels take only bounded values: anything a client can invent maps to one constant.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
UNMATCHED_ROUTE = "<unmatched>"


def metric_labels(
    scope: Scope, status: int, root_path: str = "", mounts: Collection[str] = ()
) -> tuple[str, str, str]:
    """(method, route template, status) for the HTTP metrics: never a raw path or method.

    `root_path` is the scope's root path before routing; `mounts` the app's mount prefixes.
    """
    method = scope["method"] if scope["method"] in KNOWN_METHODS else OTHER_METHOD
    # The template ("/api/v1/listings/{listing_id}"), set by the router when a route matched.
    route = getattr(scope.get("route"), "path", None)
    if route is None:
        # A mounted app (the static files) sets no route; the router appended its prefix to
        # the root path. Only a known prefix is used, so the label stays bounded.
        prefix = str(scope.get("root_path", ""))[len(root_path) :]
        route = prefix if prefix in mounts else UNMATCHED_ROUTE
    return method, route, str(status)


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
    def __init__(self, app: ASGIApp, pool_stats: Any = None, mounts: Collection[str] = ()) -> None:
        self.app = app
        self.pool_stats = pool_stats
        self.mounts = frozenset(mounts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope["headers"])
        root_path = scope.get("root_path", "")
        token = request_id_var.set(request_id)
        status = 500
        response_started = False
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
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
        except Exception:
            # Caught here rather than by an exception handler: Starlette runs its catch-all
            # outside the user middleware, where the request id is gone and the 500 would
            # leave without X-Request-ID. Not raised further: this line is the one report.
            error_log.exception("unhandled error")
            if not response_started:
                await internal_error()(scope, receive, send_with_id)
        finally:
            HTTP_IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            labels = metric_labels(scope, status, root_path, self.mounts)
            template = labels[1]
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

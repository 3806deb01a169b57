"""Every error leaves the API as JSON: {"error": <short reason>, "detail": <specifics>}."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("listings.api")


class ApiError(Exception):
    """Raised by handlers to answer with a given status and JSON error body."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers


def error_response(
    status: int, error: str, detail: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def field_error(field: str, message: str) -> ApiError:
    return ApiError(422, "validation failed", [{"field": field, "message": message}])


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    # ("query", "limit") → "limit"; ("body", "price") → "price": the name the client sent.
    parts = [str(p) for p in loc if p not in ("query", "path", "body", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"field": _field_name(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        return error_response(422, "validation failed", detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = {404: "not found", 405: "method not allowed"}.get(exc.status_code, "error")
        return error_response(exc.status_code, reason, exc.detail, exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal error", "the error was logged with the request id")

"""Every error leaves the API as JSON: {"error": <short reason>, "detail": <specifics>}."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from asyncpg.exceptions import InterfaceError as AsyncpgInterfaceError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError
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
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers
        self.extra = dict(extra or {})


def error_response(
    status: int,
    error: str,
    detail: Any = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body = {"error": error, "detail": detail, **(extra or {})}
    return JSONResponse(body, status_code=status, headers=headers)


def internal_error() -> JSONResponse:
    """The answer to an unhandled error (RequestContextMiddleware logs it and sends this)."""
    return error_response(500, "internal error", "the error was logged with the request id")


def field_error(field: str, message: str) -> ApiError:
    return ApiError(422, "validation failed", [{"field": field, "message": message}])


_OUT_OF_RANGE = {
    "field": "request",
    "message": "a value is out of range or of the wrong type for the database; check the "
    "numbers and ids sent",
}


def _driver_exception(exc: DBAPIError) -> BaseException | None:
    orig = exc.orig
    driver = getattr(orig, "driver_exception", None) or getattr(orig, "__cause__", None)
    return driver if isinstance(driver, BaseException) else orig


def is_data_error(exc: DBAPIError) -> bool:
    """True when the database (or the driver encoding a parameter) refused a value.

    SQLSTATE class 22 ("data exception": out of range, invalid text representation...) from the
    server, or asyncpg's client-side DataError (an int that does not fit the parameter's type).
    """
    if isinstance(exc, DataError):
        return True
    driver = _driver_exception(exc)
    if isinstance(driver, AsyncpgInterfaceError) and isinstance(driver, ValueError):
        return True  # asyncpg.exceptions._base.DataError, raised before anything is sent
    sqlstate = getattr(driver, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("22")


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    # ("query", "limit") → "limit"; ("body", "price") → "price": the name the client sent.
    parts = [str(p) for p in loc if p not in ("query", "path", "body", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.detail, exc.headers, exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"field": _field_name(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        return error_response(422, "validation failed", detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = {404: "not found", 405: "method not allowed"}.get(exc.status_code, "error")
        return error_response(exc.status_code, reason, exc.detail, exc.headers)

    @app.exception_handler(DBAPIError)
    async def _db_error(_: Request, exc: DBAPIError) -> JSONResponse:
        if not is_data_error(exc):
            raise exc  # a real failure: the request middleware logs it and answers 500
        # Last line of defence: a value the checks before the query let through but PostgreSQL
        # (or asyncpg encoding it) refuses, e.g. a number out of a column's range. A client
        # mistake, so no traceback at error level; the message is not echoed (it quotes values).
        driver = _driver_exception(exc)
        log.warning("database refused a value", extra={"db_error": type(driver).__name__})
        return error_response(422, "validation failed", [_OUT_OF_RANGE])

"""Listing search, detail, create and update."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from listings.api.auth import ApiKeyOwner, OptionalApiKeyOwner
from listings.api.errors import ApiError, field_error
from listings.api.state import AppState, get_state
from listings.cursor import InvalidCursorError, decode_cursor
from listings.ingest.feed import COLUMNS, validate_values
from listings.search import (
    DETAIL_COLUMNS,
    MAX_BEDROOMS_FILTER,
    MAX_INT8,
    MAX_LIMIT,
    PUBLIC_DETAIL_COLUMNS,
    SearchFilters,
    search_listings,
)
from listings.tables import listings

router = APIRouter(prefix="/api/v1/listings", tags=["listings"])
State = Annotated[AppState, Depends(get_state)]
Kind = Literal["apartment", "house", "studio", "land", "commercial"]
ListingId = Annotated[int, Path(ge=1, le=MAX_INT8, description="the listing's id")]
Price = Annotated[int | None, Query(ge=0, le=MAX_INT8)]

DETAIL_DESCRIPTION = """One listing by id.

The agent's contact details (`contact_name`, `contact_email`, `contact_phone`) are personal
data: they are returned only to callers sending a valid API key as
`Authorization: Bearer <key>`, and are omitted from the response otherwise. A key that is sent
but unknown or revoked is refused with 401 rather than silently treated as anonymous.
"""


@router.get("")
async def search(
    state: State,
    city: Annotated[str | None, Query(max_length=100)] = None,
    kind: Kind | None = None,
    min_price: Price = None,
    max_price: Price = None,
    bedrooms: Annotated[int | None, Query(ge=0, le=MAX_BEDROOMS_FILTER)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    after_id = None
    if cursor:
        try:
            after_id = decode_cursor(cursor)
        except InvalidCursorError as exc:
            raise field_error("cursor", f"{exc}; use the next_cursor of a previous page") from None
    filters = SearchFilters(city, kind, min_price, max_price, bedrooms, q, limit, after_id)
    async with state.engine.connect() as conn:
        items, next_cursor = await search_listings(conn, filters)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{listing_id}", description=DETAIL_DESCRIPTION)
async def detail(listing_id: ListingId, owner: OptionalApiKeyOwner, state: State) -> dict[str, Any]:
    columns = DETAIL_COLUMNS if owner is not None else PUBLIC_DETAIL_COLUMNS
    async with state.engine.connect() as conn:
        row = (
            (await conn.execute(select(*columns).where(listings.c.id == listing_id)))
            .mappings()
            .first()
        )
    if row is None:
        raise ApiError(404, "not found", f"no listing with id {listing_id}")
    return dict(row)


def _validated(body: dict[str, Any]) -> dict[str, object]:
    """Same rules as feed rows, so the API and ingest can never disagree on a valid listing."""
    record, errors = validate_values(1, [body.get(name) for name in COLUMNS])
    if record is None:
        raise ApiError(
            422,
            "validation failed",
            [{"field": e.field, "message": e.message} for e in errors],
        )
    return dict(zip(COLUMNS, record, strict=True))


_CONFLICT = "a listing with this source and source_id already exists"


@router.post("", status_code=201)
async def create(
    _owner: ApiKeyOwner, state: State, body: Annotated[dict[str, Any], Body()]
) -> JSONResponse:
    values = _validated(body)
    try:
        async with state.engine.begin() as conn:
            row = (
                (await conn.execute(insert(listings).values(**values).returning(*DETAIL_COLUMNS)))
                .mappings()
                .one()
            )
    except IntegrityError:
        raise ApiError(409, "conflict", _CONFLICT) from None
    item = dict(row)
    return JSONResponse(
        jsonable_encoder(item),
        status_code=201,
        headers={"Location": f"/api/v1/listings/{item['id']}"},
    )


@router.put("/{listing_id}")
async def replace(
    listing_id: ListingId,
    _owner: ApiKeyOwner,
    state: State,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    values = _validated(body)
    try:
        async with state.engine.begin() as conn:
            row = (
                (
                    await conn.execute(
                        update(listings)
                        .where(listings.c.id == listing_id)
                        .values(**values, updated_at=func.now())
                        .returning(*DETAIL_COLUMNS)
                    )
                )
                .mappings()
                .first()
            )
    except IntegrityError:
        raise ApiError(409, "conflict", _CONFLICT) from None
    if row is None:
        raise ApiError(404, "not found", f"no listing with id {listing_id}")
    return dict(row)

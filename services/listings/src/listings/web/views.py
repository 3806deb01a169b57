"""GET /: the search page. Plain HTML forms and links, so it works without JavaScript."""

from __future__ import annotations

from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader

from listings.api.state import AppState, get_state
from listings.cursor import InvalidCursorError, decode_cursor
from listings.search import (
    DEFAULT_LIMIT,
    MAX_BEDROOMS_FILTER,
    MAX_INT8,
    SearchFilters,
    search_listings,
)
from listings.tables import KINDS

router = APIRouter(include_in_schema=False)
# autoescape=True: listing titles come from third-party feeds and must never become markup.
templates = Environment(
    loader=FileSystemLoader(str(files("listings") / "web" / "templates")), autoescape=True
)
FORM_FIELDS = ("city", "kind", "min_price", "max_price", "bedrooms", "q")


def _number(raw: str, name: str, problems: list[str], maximum: int) -> int | None:
    # Empty form fields arrive as "" and mean "no filter", unlike the JSON API.
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()):
        problems.append(f"{name} must be a whole number")
        return None
    # Checked on the text first: int() of a huge digit string is slow or refused outright.
    if len(raw.lstrip("0")) > len(str(maximum)) or int(raw) > maximum:
        problems.append(f"{name} must be at most {maximum:,}".replace(",", " "))
        return None
    return int(raw)


@router.get("/", response_class=HTMLResponse)
async def search_page(
    request: Request, state: Annotated[AppState, Depends(get_state)]
) -> HTMLResponse:
    params = {name: request.query_params.get(name, "").strip() for name in FORM_FIELDS}
    problems: list[str] = []
    kind = params["kind"] if params["kind"] in KINDS else None
    if params["kind"] and kind is None:
        problems.append("kind is not one of the listed kinds")
    after_id = None
    if cursor := request.query_params.get("cursor"):
        try:
            after_id = decode_cursor(cursor)
        except InvalidCursorError:
            problems.append("the page link is not valid; start from the first page")
    filters = SearchFilters(
        city=params["city"][:100] or None,
        kind=kind,
        min_price=_number(params["min_price"], "minimum price", problems, MAX_INT8),
        max_price=_number(params["max_price"], "maximum price", problems, MAX_INT8),
        bedrooms=_number(params["bedrooms"], "bedrooms", problems, MAX_BEDROOMS_FILTER),
        q=params["q"][:200] or None,
        limit=DEFAULT_LIMIT,
        after_id=after_id,
    )
    items: list[dict[str, Any]] = []
    next_cursor: str | None = None
    if not problems:
        async with state.engine.connect() as conn:
            items, next_cursor = await search_listings(conn, filters)
    next_url = None
    if next_cursor:
        kept = {k: v for k, v in params.items() if v}
        next_url = "/?" + urlencode({**kept, "cursor": next_cursor})
    html = templates.get_template("search.html").render(
        params=params,
        kinds=KINDS,
        items=items,
        next_url=next_url,
        problems=problems,
        max_bedrooms=MAX_BEDROOMS_FILTER,
    )
    return HTMLResponse(html, status_code=400 if problems else 200)

"""Listing search: filters → one SQL statement ordered newest first, paginated by keyset on id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from listings.cursor import encode_cursor
from listings.tables import listings

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Upper bounds of the columns the filters compare with: a larger value is refused as a client
# error before it reaches PostgreSQL (where it would be an encoding error, not an empty result).
MAX_INT8 = 2**63 - 1  # listings.id, listings.price (bigint)
MAX_INT4 = 2**31 - 1  # listings.bedrooms (integer)
MAX_BEDROOMS_FILTER = 1000  # the feed refuses more rooms than this anyway

# The agent's contact details are personal data: never in search results, and in the detail
# only for callers with an API key.
CONTACT_FIELDS = frozenset({"contact_name", "contact_email", "contact_phone"})
SUMMARY_COLUMNS = [c for c in listings.c if c.name not in {"search", *CONTACT_FIELDS}]
PUBLIC_DETAIL_COLUMNS = [c for c in listings.c if c.name not in {"search", *CONTACT_FIELDS}]
DETAIL_COLUMNS = [c for c in listings.c if c.name != "search"]


@dataclass(frozen=True)
class SearchFilters:
    city: str | None = None
    kind: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    bedrooms: int | None = None
    q: str | None = None
    limit: int = DEFAULT_LIMIT
    after_id: int | None = None


def build_search_query(filters: SearchFilters) -> Select[Any]:
    """One page plus one extra row: the extra row tells whether a next page exists."""
    stmt = select(*SUMMARY_COLUMNS)
    if filters.city:
        # lower() on both sides matches the (lower(city), id) index and forgives "paris".
        stmt = stmt.where(func.lower(listings.c.city) == filters.city.strip().lower())
    if filters.kind:
        stmt = stmt.where(listings.c.kind == filters.kind)
    if filters.min_price is not None:
        stmt = stmt.where(listings.c.price >= filters.min_price)
    if filters.max_price is not None:
        stmt = stmt.where(listings.c.price <= filters.max_price)
    if filters.bedrooms is not None:
        stmt = stmt.where(listings.c.bedrooms >= filters.bedrooms)
    if filters.q and filters.q.strip():
        stmt = stmt.where(
            listings.c.search.op("@@")(func.websearch_to_tsquery("simple", filters.q.strip()))
        )
    if filters.after_id is not None:
        stmt = stmt.where(listings.c.id < filters.after_id)
    return stmt.order_by(listings.c.id.desc()).limit(filters.limit + 1)


def paginate(rows: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """Cut the extra row off and turn it into the next cursor."""
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    return page, encode_cursor(int(page[-1]["id"]))


async def search_listings(
    conn: AsyncConnection, filters: SearchFilters
) -> tuple[list[dict[str, Any]], str | None]:
    result = await conn.execute(build_search_query(filters))
    return paginate([dict(row) for row in result.mappings()], filters.limit)

import random
from typing import Any

import httpx
import pytest
from listings.cursor import encode_cursor
from listings.tables import listings
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.integration

CITIES = ["Paris", "Lyon", "Lille", "Nantes"]
KINDS = ["apartment", "house", "studio", "land", "commercial"]
WORDS = ["garden", "balcony", "garage", "terrace", "cellar", "view"]
ROWS = 3000


@pytest.fixture
async def seeded(engine: AsyncEngine, empty_listings: None) -> list[dict[str, Any]]:
    rng = random.Random(42)
    rows = [
        {
            "source": "seed",
            "source_id": str(i),
            "title": f"Home {i} with {rng.choice(WORDS)}",
            "description": f"Close to shops, {rng.choice(WORDS)} included",
            "kind": rng.choice(KINDS),
            "price": rng.randint(50_000, 1_000_000),
            "city": rng.choice(CITIES),
            "bedrooms": rng.choice([None, 0, 1, 2, 3, 4, 5]),
        }
        for i in range(ROWS)
    ]
    async with engine.begin() as conn:
        await conn.execute(insert(listings), rows)
    return rows


async def all_pages(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(ROWS):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/v1/listings", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination never ended")


async def test_paging_through_everything_sees_every_row_exactly_once(
    client: httpx.AsyncClient, seeded: list[dict[str, Any]]
) -> None:
    items = await all_pages(client, limit=100)
    ids = [item["id"] for item in items]
    assert len(ids) == ROWS
    assert len(set(ids)) == ROWS
    assert ids == sorted(ids, reverse=True)
    assert "contact_email" not in items[0]


@pytest.mark.parametrize(
    "params",
    [
        {"city": "paris"},
        {"kind": "house"},
        {"min_price": 300_000, "max_price": 600_000},
        {"bedrooms": 3},
        {"city": "Lyon", "kind": "studio", "bedrooms": 1, "max_price": 800_000},
        {"q": "garden"},
        {"q": "terrace", "city": "Lille"},
    ],
)
async def test_filters_return_exactly_the_matching_rows(
    client: httpx.AsyncClient, seeded: list[dict[str, Any]], params: dict[str, Any]
) -> None:
    def matches(row: dict[str, Any]) -> bool:
        text = f"{row['title']} {row['description']}"
        return (
            ("city" not in params or row["city"].lower() == params["city"].lower())
            and ("kind" not in params or row["kind"] == params["kind"])
            and ("min_price" not in params or row["price"] >= params["min_price"])
            and ("max_price" not in params or row["price"] <= params["max_price"])
            and (
                "bedrooms" not in params
                or (row["bedrooms"] is not None and row["bedrooms"] >= params["bedrooms"])
            )
            and ("q" not in params or params["q"] in text.split() or params["q"] + "," in text)
        )

    expected = {row["source_id"] for row in seeded if matches(row)}
    found = [item["source_id"] for item in await all_pages(client, limit=37, **params)]
    assert expected, "the seed data should exercise this filter"
    assert len(found) == len(set(found))
    assert set(found) == expected


async def test_the_default_page_size_is_20(
    client: httpx.AsyncClient, seeded: list[dict[str, Any]]
) -> None:
    page = (await client.get("/api/v1/listings")).json()
    assert len(page["items"]) == 20
    assert page["next_cursor"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"kind": "castle"}, "kind"),
        ({"min_price": "cheap"}, "min_price"),
        ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
        ({"cursor": "!!!"}, "cursor"),
        # Past the bigint/integer columns: a 422, never a database error.
        ({"min_price": 2**63}, "min_price"),
        ({"max_price": 10**30}, "max_price"),
        ({"bedrooms": 2**31}, "bedrooms"),
        ({"cursor": encode_cursor(2**63)}, "cursor"),
    ],
)
async def test_bad_parameters_are_422_naming_the_field(
    client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    response = await client.get("/api/v1/listings", params=params)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation failed"
    assert [d["field"] for d in body["detail"]] == [field]


async def test_the_largest_values_are_still_valid_filters(
    client: httpx.AsyncClient, seeded: list[dict[str, Any]]
) -> None:
    params = {"min_price": 0, "max_price": 2**63 - 1, "cursor": encode_cursor(2**63 - 1)}
    response = await client.get("/api/v1/listings", params=params)
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 20


async def test_a_listing_can_be_fetched_by_id(
    client: httpx.AsyncClient, seeded: list[dict[str, Any]]
) -> None:
    first = (await client.get("/api/v1/listings", params={"limit": 1})).json()["items"][0]
    detail = await client.get(f"/api/v1/listings/{first['id']}")
    assert detail.status_code == 200
    assert detail.json()["title"] == first["title"]
    missing = await client.get("/api/v1/listings/999999999")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not found"

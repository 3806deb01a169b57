"""Numbers past what the columns hold are client errors (422 / a message), never 500s."""

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from listings.api.app import create_app
from listings.settings import Settings
from listings.tables import listings
from sqlalchemy import select, text

pytestmark = pytest.mark.integration

TOO_BIG_ID = 2**63  # one past bigint
LISTING = {
    "source": "bounds",
    "source_id": "b-1",
    "title": "Bounded flat",
    "kind": "apartment",
    "price": 100000,
    "city": "Brest",
}


def assert_422_naming(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation failed"
    assert [d["field"] for d in body["detail"]] == [field]


@pytest.mark.parametrize("listing_id", [TOO_BIG_ID, 10**30, 0, -1])
async def test_an_out_of_range_listing_id_is_422(
    client: httpx.AsyncClient, auth: dict[str, str], listing_id: int
) -> None:
    assert_422_naming(await client.get(f"/api/v1/listings/{listing_id}"), "listing_id")
    put = await client.put(f"/api/v1/listings/{listing_id}", json=LISTING, headers=auth)
    assert_422_naming(put, "listing_id")


async def test_the_largest_bigint_id_is_a_plain_404(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"/api/v1/listings/{TOO_BIG_ID - 1}")).status_code == 404


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"min_price": str(10**20)}, "minimum price must be at most"),
        ({"max_price": "9" * 5000}, "maximum price must be at most"),
        ({"bedrooms": str(2**31)}, "bedrooms must be at most 1 000"),
    ],
)
async def test_the_viewer_explains_numbers_that_are_too_large(
    client: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    page = await client.get("/", params=params)
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    assert message in page.text


async def test_the_viewer_takes_the_largest_values(client: httpx.AsyncClient) -> None:
    page = await client.get("/", params={"max_price": str(2**63 - 1), "bedrooms": "1000"})
    assert page.status_code == 200


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
async def probe_app(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Records]]:
    """An app with routes that send the database values it refuses, past every check."""
    app: FastAPI = create_app(settings)

    async def run(statement: Any) -> dict[str, str]:
        async with app.state.listings.engine.connect() as conn:
            await conn.execute(statement)
        return {"status": "ran"}

    @app.get("/probe/client-side")
    async def client_side() -> dict[str, str]:
        # asyncpg refuses to encode the parameter: bedrooms is an integer (int4) column.
        return await run(select(listings.c.id).where(listings.c.bedrooms >= 2**40))

    @app.get("/probe/server-side")
    async def server_side() -> dict[str, str]:
        return await run(text("SELECT 2147483647::int4 + 1"))  # SQLSTATE 22003

    @app.get("/probe/not-a-data-error")
    async def not_a_data_error() -> dict[str, str]:
        return await run(text("SELECT * FROM no_such_table"))

    records = Records()
    logging.getLogger().addHandler(records)  # after create_app: it resets the root handlers
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://probe.test") as http,
        ):
            yield http, records
    finally:
        logging.getLogger().removeHandler(records)


@pytest.mark.parametrize("path", ["/probe/client-side", "/probe/server-side"])
async def test_a_value_the_database_refuses_is_422_without_an_error_traceback(
    probe_app: tuple[httpx.AsyncClient, Records], path: str
) -> None:
    http, records = probe_app
    response = await http.get(path)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation failed"
    assert "out of range" in response.json()["detail"][0]["message"]
    assert not [r for r in records.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_other_database_errors_stay_500_and_are_logged(
    probe_app: tuple[httpx.AsyncClient, Records],
) -> None:
    http, records = probe_app
    response = await http.get("/probe/not-a-data-error")
    assert response.status_code == 500
    assert any(r.levelno >= logging.ERROR and r.exc_info for r in records.records)

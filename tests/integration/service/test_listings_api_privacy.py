"""Personal data: the agent's contact details only reach callers with an API key."""

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from listings.api import routes_listings

pytestmark = pytest.mark.integration

CONTACTS = {
    "contact_name": "Jeanne Agent",
    "contact_email": "jeanne.agent@agency.example",
    "contact_phone": "+33 6 12 34 56 78",
}
LISTING: dict[str, Any] = {
    "source": "privacy",
    "source_id": "p-1",
    "title": "Quiet house near the privacy park",
    "kind": "house",
    "price": 410000,
    "city": "Rennes",
    **CONTACTS,
}


@pytest.fixture
async def listing_id(client: httpx.AsyncClient, auth: dict[str, str], empty_listings: None) -> int:
    created = await client.post("/api/v1/listings", json=LISTING, headers=auth)
    assert created.status_code == 201, created.text
    assert {k: created.json()[k] for k in CONTACTS} == CONTACTS
    return int(created.json()["id"])


async def test_anonymous_detail_omits_contact_fields(
    client: httpx.AsyncClient, listing_id: int
) -> None:
    response = await client.get(f"/api/v1/listings/{listing_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["title"] == LISTING["title"]
    assert not set(CONTACTS) & set(body)
    for value in CONTACTS.values():
        assert value not in response.text


async def test_detail_with_a_key_has_the_contact_fields(
    client: httpx.AsyncClient, auth: dict[str, str], listing_id: int
) -> None:
    body = (await client.get(f"/api/v1/listings/{listing_id}", headers=auth)).json()
    assert {k: body[k] for k in CONTACTS} == CONTACTS


async def test_detail_with_a_wrong_key_is_401_not_silently_anonymous(
    client: httpx.AsyncClient, listing_id: int
) -> None:
    response = await client.get(
        f"/api/v1/listings/{listing_id}", headers={"Authorization": "Bearer slw_wrong"}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


async def test_the_viewer_and_the_detail_it_links_to_show_no_contact_data(
    client: httpx.AsyncClient, listing_id: int
) -> None:
    page = await client.get("/", params={"city": "Rennes"})
    assert page.status_code == 200
    assert LISTING["title"] in page.text
    link = f"/api/v1/listings/{listing_id}"
    assert f'href="{link}"' in page.text
    followed = await client.get(link)  # what a visitor of the viewer gets by clicking
    for value in CONTACTS.values():
        assert value not in page.text
        assert value not in followed.text


async def test_ingest_job_status_needs_a_key(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/ingest",
        content=b"source,source_id,title,kind,price,city\ns,1,Flat,apartment,100000,Paris\n",
        headers={**auth, "Content-Type": "text/csv"},
    )
    assert response.status_code == 202, response.text
    url = f"/api/v1/ingest/{response.json()['job_id']}"

    missing = await client.get(url)
    assert missing.status_code == 401
    assert missing.json()["error"] == "unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = await client.get(url, headers={"Authorization": "Bearer slw_wrong"})
    assert wrong.status_code == 401
    allowed = await client.get(url, headers=auth)
    assert allowed.status_code == 200
    assert allowed.json()["status"] in ("queued", "running", "done", "failed")
    unknown = await client.get("/api/v1/ingest/00000000-0000-0000-0000-000000000000")
    assert unknown.status_code == 401  # no probing for which job ids exist without a key


def test_the_openapi_description_documents_the_rule() -> None:
    app = FastAPI()
    app.include_router(routes_listings.router)
    operation = app.openapi()["paths"]["/api/v1/listings/{listing_id}"]["get"]
    assert "contact_email" in operation["description"]
    assert "Authorization: Bearer" in operation["description"]
    assert "omitted" in operation["description"]

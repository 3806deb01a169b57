from collections.abc import Callable
from subprocess import CompletedProcess
from typing import Any

import httpx
import pytest
from listings.settings import Settings

pytestmark = pytest.mark.integration

LISTING = {
    "source": "api",
    "source_id": "flat-1",
    "title": "Sunny flat",
    "kind": "apartment",
    "price": 320000,
    "city": "Nantes",
    "bedrooms": 2,
    "contact_email": "agent@agency.example",
}


async def test_health_version_and_request_id(client: httpx.AsyncClient, settings: Settings) -> None:
    health = await client.get("/health", headers={"X-Request-ID": "req-from-nginx-1"})
    assert health.json() == {"status": "ok"}
    assert health.headers["x-request-id"] == "req-from-nginx-1"
    generated = await client.get("/health", headers={"X-Request-ID": "bad id\nwith newline"})
    assert generated.headers["x-request-id"] not in ("", "bad id\nwith newline")
    version = (await client.get("/api/v1/version")).json()
    assert version == {"version": settings.version, "git_sha": settings.git_sha, "release": ""}


async def test_metrics_use_route_templates_not_raw_paths(client: httpx.AsyncClient) -> None:
    await client.get("/api/v1/listings/424242")
    await client.get("/no/such/page")
    text = (await client.get("/metrics")).text
    assert 'route="/api/v1/listings/{listing_id}"' in text
    assert "424242" not in text
    assert 'route="<unmatched>",status="404"' in text
    assert "listings_build_info{" in text
    assert "listings_http_requests_in_flight" in text
    assert 'listings_db_pool_connections{state="in_use"}' in text


async def test_writes_need_a_valid_key(client: httpx.AsyncClient, empty_listings: None) -> None:
    missing = await client.post("/api/v1/listings", json=LISTING)
    assert missing.status_code == 401
    assert missing.json()["error"] == "unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = await client.post(
        "/api/v1/listings", json=LISTING, headers={"Authorization": "Bearer slw_not-a-key"}
    )
    assert wrong.status_code == 401


async def test_create_update_and_conflict(
    client: httpx.AsyncClient, auth: dict[str, str], empty_listings: None
) -> None:
    created = await client.post("/api/v1/listings", json=LISTING, headers=auth)
    assert created.status_code == 201, created.text
    item: dict[str, Any] = created.json()
    assert created.headers["location"] == f"/api/v1/listings/{item['id']}"
    assert item["price"] == 320000

    duplicate = await client.post("/api/v1/listings", json=LISTING, headers=auth)
    assert duplicate.status_code == 409

    updated = await client.put(
        f"/api/v1/listings/{item['id']}", json={**LISTING, "price": 299000}, headers=auth
    )
    assert updated.status_code == 200
    assert updated.json()["price"] == 299000
    fetched = (await client.get(f"/api/v1/listings/{item['id']}")).json()
    assert fetched["price"] == 299000

    absent = await client.put("/api/v1/listings/987654321", json=LISTING, headers=auth)
    assert absent.status_code == 404


async def test_invalid_listing_is_422_naming_each_field(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/listings", json={**LISTING, "price": -3, "kind": "boat"}, headers=auth
    )
    assert response.status_code == 422
    fields = {d["field"] for d in response.json()["detail"]}
    assert fields == {"price", "kind"}


async def test_api_keys_from_the_cli_work_until_revoked(
    client: httpx.AsyncClient, cli: Callable[..., CompletedProcess[str]], empty_listings: None
) -> None:
    created = cli("apikey", "create", "--name", "cli-test")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("slw_")
    headers = {"Authorization": f"Bearer {key}"}
    assert (await client.post("/api/v1/listings", json=LISTING, headers=headers)).status_code == 201

    again = cli("apikey", "create", "--name", "cli-test")
    assert again.returncode == 1
    assert "already exists" in again.stderr

    revoked = cli("apikey", "revoke", "--name", "cli-test")
    assert revoked.returncode == 0, revoked.stderr
    second = {**LISTING, "source_id": "flat-2"}
    assert (await client.post("/api/v1/listings", json=second, headers=headers)).status_code == 401
    assert cli("apikey", "revoke", "--name", "cli-test").returncode == 1


async def test_the_viewer_renders_results_and_escapes_html(
    client: httpx.AsyncClient, auth: dict[str, str], empty_listings: None
) -> None:
    hostile = {**LISTING, "title": "<script>alert(1)</script> Loft", "city": "Lille"}
    assert (await client.post("/api/v1/listings", json=hostile, headers=auth)).status_code == 201
    for i in range(25):
        row = {**LISTING, "source_id": f"v-{i}", "title": f"Viewer home {i}", "city": "Lille"}
        assert (await client.post("/api/v1/listings", json=row, headers=auth)).status_code == 201

    page = await client.get("/", params={"city": "Lille", "min_price": "", "kind": ""})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<script>alert(1)</script>" not in html
    assert "Viewer home 24" in html
    assert 'rel="next"' in html
    next_href = html.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
    second = await client.get(next_href)
    assert second.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Loft" in second.text
    assert "<script>" not in second.text
    assert "Viewer home 24" not in second.text

    bad = await client.get("/", params={"min_price": "lots"})
    assert bad.status_code == 400
    assert "minimum price must be a whole number" in bad.text

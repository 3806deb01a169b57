"""HTTP metrics: bounded labels whatever a client sends, and the SLO threshold as a bucket."""

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from listings.api import routes_ingest, routes_listings, routes_ops
from listings.api.app import create_app
from listings.api.middleware import KNOWN_METHODS, OTHER_METHOD, UNMATCHED_ROUTE
from listings.metrics import HTTP_LATENCY, HTTP_REQUESTS, LATENCY_BUCKETS
from listings.settings import load_settings
from listings.web import views
from starlette.routing import Mount

pytestmark = pytest.mark.unit

# Nothing listens there: requests that reach the database fail fast, which is fine here.
NOWHERE_DB = "postgresql+asyncpg://listings:unused@127.0.0.1:1/listings"
NOWHERE_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def app(restore_logging: None) -> FastAPI:
    return create_app(
        load_settings(env="test", database_url=NOWHERE_DB, redis_url=NOWHERE_REDIS, db_timeout_s=1)
    )


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://listings.test") as http:
        yield http


def templates(app: FastAPI) -> set[str]:
    """Every route label the app may produce: its templates, mounts and the fixed fallback."""
    routes = [*app.routes]
    for router in (routes_ops, routes_listings, routes_ingest, views):
        routes += router.router.routes
    return {route.path for route in routes if hasattr(route, "path")} | {UNMATCHED_ROUTE}


def label_sets() -> set[tuple[str, ...]]:
    """Every (name, method, route, status) series of the request counter and the histogram."""
    found = set()
    for metric in (HTTP_REQUESTS, HTTP_LATENCY):
        for family in metric.collect():
            for sample in family.samples:
                if "route" in sample.labels:
                    labels = sample.labels
                    found.add((family.name, labels["method"], labels["route"], labels["status"]))
    return found


def counted(method: str, route: str, status: int) -> float:
    for family in HTTP_REQUESTS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels == {
                "method": method,
                "route": route,
                "status": str(status),
            }:
                return sample.value
    return 0.0


async def weird_requests(client: httpx.AsyncClient) -> str:
    """A batch of requests made of random paths and methods; the token they all carry."""
    token = secrets.token_hex(6)
    await client.get(f"/no/such/page/{token}")
    await client.get(f"/api/v1/listings/{token}")  # a template with a garbage id: 422
    await client.get(f"/api/v1/listings/{token}/extra/{token}")
    await client.get(f"/static/{token}.css")
    await client.request(f"BREW{token}".upper(), "/health")
    await client.request(f"PROPFIND{token}".upper(), f"/x/{token}")
    return token


async def test_random_paths_and_methods_map_to_fixed_label_values(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    before_404 = counted("GET", UNMATCHED_ROUTE, 404)
    before_other = counted(OTHER_METHOD, "/health", 405)
    token = await weird_requests(client)

    series = label_sets()
    for _, method, route, _ in series:
        assert token not in method.lower() and token not in route
        assert method in KNOWN_METHODS | {OTHER_METHOD}
        assert route in templates(app)
    assert counted("GET", UNMATCHED_ROUTE, 404) == before_404 + 2
    assert counted("GET", "/api/v1/listings/{listing_id}", 422) >= 1
    assert counted("GET", "/static", 404) >= 1
    assert counted(OTHER_METHOD, "/health", 405) == before_other + 1
    assert counted(OTHER_METHOD, UNMATCHED_ROUTE, 404) >= 1


async def test_more_random_requests_create_no_new_series(client: httpx.AsyncClient) -> None:
    await weird_requests(client)
    known = label_sets()
    for _ in range(3):
        await weird_requests(client)
    assert label_sets() == known


async def test_the_static_mount_is_labelled_by_its_prefix(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/static/style.css")).status_code == 200
    assert counted("GET", "/static", 200) >= 1
    mounts = [r for r in app.routes if isinstance(r, Mount)]
    # The label is the mount's literal prefix: a parameter in it would be a raw value.
    assert mounts
    assert all("{" not in m.path for m in mounts)


async def test_the_slo_threshold_is_exactly_a_latency_bucket(client: httpx.AsyncClient) -> None:
    # The latency SLO alerts read le="0.5" (99% of requests under 500 ms).
    assert 0.5 in LATENCY_BUCKETS
    await client.get("/health")
    bounds = {
        sample.labels["le"]
        for family in HTTP_LATENCY.collect()
        for sample in family.samples
        if sample.name.endswith("_bucket") and sample.labels["route"] == "/health"
    }
    assert "0.5" in bounds
    assert "+Inf" in bounds

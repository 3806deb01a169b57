"""End to end through `invoke up` and nginx over HTTPS, certificate verified with the local CA."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx
import pytest

from ops.perf import feeds

if TYPE_CHECKING:
    from conftest import Stack


pytestmark = pytest.mark.e2e

ROWS = 10_000


def _get_json(client: httpx.Client, path: str, params: dict[str, object]) -> dict:
    """GET a JSON page; a 429 is waited out as its Retry-After says (a bounded number of times)."""
    for _ in range(20):
        response = client.get(path, params=params)
        if response.status_code != 429:
            assert response.status_code == 200, response.text
            return response.json()
        time.sleep(float(response.headers.get("retry-after", "1")))
    raise AssertionError(f"GET {path} {params} was rate limited 20 times in a row")


def _search_all(client: httpx.Client, max_pages: int = 1000, **filters: object) -> list[dict]:
    """Every listing matching `filters`, following next_cursor 100 at a time."""
    items: list[dict] = []
    cursor = None
    for _ in range(max_pages):
        params: dict[str, object] = {"limit": 100, **filters}
        if cursor:
            params["cursor"] = cursor
        page = _get_json(client, "/api/v1/listings", params)
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items
    raise AssertionError(f"more than {max_pages} pages of listings for {filters}")


def test_health_and_ready_answer_through_nginx_with_a_verified_certificate(stack: Stack) -> None:
    with stack.client() as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 200, ready.text


def test_version_endpoint_reports_the_build(stack: Stack) -> None:
    with stack.client() as client:
        body = client.get("/api/v1/version").json()
    assert set(body) >= {"version", "git_sha", "release"}
    assert body["version"] not in ("", None)


def test_http_redirects_to_https(stack: Stack) -> None:
    response = httpx.get(f"{stack.http_url}/api/v1/listings?city=Lyon", follow_redirects=False)
    assert response.status_code in (301, 308)
    assert response.headers["location"] == f"{stack.base_url}/api/v1/listings?city=Lyon"


def test_security_headers_are_sent(stack: Stack) -> None:
    with stack.client() as client:
        response = client.get("/")
    headers = response.headers
    assert "max-age=" in headers["strict-transport-security"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers.get("x-frame-options") == "DENY" or "frame-ancestors" in headers.get(
        "content-security-policy", ""
    )
    assert headers["referrer-policy"]
    assert "default-src" in headers["content-security-policy"]
    assert "server" not in headers or "/" not in headers["server"]  # no version disclosed


def test_request_id_is_set_by_nginx_and_kept_when_valid(stack: Stack) -> None:
    mine = uuid.uuid4().hex
    with stack.client() as client:
        generated = client.get("/health").headers.get("x-request-id")
        kept = client.get("/health", headers={"X-Request-ID": mine}).headers.get("x-request-id")
    assert generated and len(generated) >= 16
    assert kept == mine


def test_metrics_are_not_reachable_through_nginx(stack: Stack) -> None:
    with stack.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 404
    assert "http_requests" not in response.text


def test_create_without_key_is_401_and_with_key_201(stack: Stack, api_key: str) -> None:
    listing = {
        "source": "e2e-manual",
        "source_id": uuid.uuid4().hex,
        "title": "Loft by the river",
        "kind": "apartment",
        "price": 420000,
        "city": "Lyon",
        "bedrooms": 2,
    }
    with stack.client() as client:
        anonymous = client.post("/api/v1/listings", json=listing)
        wrong = client.post(
            "/api/v1/listings", json=listing, headers={"Authorization": "Bearer nope"}
        )
        created = client.post(
            "/api/v1/listings", json=listing, headers={"Authorization": f"Bearer {api_key}"}
        )
        assert anonymous.status_code == 401
        assert "error" in anonymous.json()
        assert wrong.status_code == 401
        assert created.status_code == 201, created.text
        fetched = client.get(f"/api/v1/listings/{created.json()['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["title"] == "Loft by the river"


def test_ingest_of_a_ten_thousand_row_feed_makes_every_row_searchable(
    stack: Stack, api_key: str
) -> None:
    source = f"e2e-{uuid.uuid4().hex[:8]}"
    body = feeds.to_csv(feeds.rows(ROWS, source=source, seed=7))
    request_id = uuid.uuid4().hex
    with stack.client() as client:
        queued = client.post(
            "/api/v1/ingest",
            content=body,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Content-Type": "text/csv",
                "X-Request-ID": request_id,
            },
        )
        assert queued.status_code == 202, queued.text
        job = stack.ingest_job(queued.json()["job_id"], api_key, timeout=300)
        assert job["status"] == "done", job
        assert job["accepted"] == ROWS and job["rejected"] == 0

        # Every row, city by city: each city's search returns exactly that city's rows.
        sent = list(feeds.rows(ROWS, source=source, seed=7))
        found: dict[str, set[str]] = {}
        for city in feeds.CITIES:
            mine = [item for item in _search_all(client, city=city) if item["source"] == source]
            ids = [item["source_id"] for item in mine]
            assert len(ids) == len(set(ids)), f"{city}: a row is returned twice"
            assert {item["city"] for item in mine} <= {city}
            found[city] = set(ids)
    expected = {city: {r["source_id"] for r in sent if r["city"] == city} for city in feeds.CITIES}
    assert found == expected
    assert sum(len(ids) for ids in found.values()) == ROWS

    # The request id given at the edge follows the job into the worker's log lines.
    logs = stack.invoke("logs", "--env=e2e", "--service=worker").stdout
    worker_lines = [
        json.loads(line[line.index("{") :]) for line in logs.splitlines() if "{" in line
    ]
    assert any(line.get("request_id") == request_id for line in worker_lines)
    assert "agent1@example.test" not in logs  # personal data is never logged


def test_a_feed_with_bad_rows_reports_them_by_line_and_stores_the_good_ones(
    stack: Stack, api_key: str
) -> None:
    source = f"e2e-bad-{uuid.uuid4().hex[:8]}"
    # A word of our own in every description (the title is one of the breakages) lets a
    # full-text search select exactly this feed's stored rows, good and bad alike.
    marker = f"marker{uuid.uuid4().hex[:12]}"
    breakages = {3: 0, 5: 1, 8: 2, 9: 3, 12: 4, 15: 5}
    sent = [
        {**row, "description": f"{row['description']} {marker}"}
        for row in feeds.rows(20, source=source)
    ]
    body = feeds.to_csv(feeds.break_rows(sent, breakages))
    with stack.client() as client:
        queued = client.post(
            "/api/v1/ingest",
            content=body,
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "text/csv"},
        )
        assert queued.status_code == 202, queued.text
        job = stack.ingest_job(queued.json()["job_id"], api_key, timeout=300)
        assert job["status"] == "done", job
        assert job["accepted"] == 20 - len(breakages)
        assert job["rejected"] == len(breakages)
        reported = {(e["line"], e["field"]) for e in job["errors"]}
        # Line numbers are file lines: the header is line 1, data line N is file line N + 1.
        expected = {(n + 1, feeds.BREAKAGES[k][0]) for n, k in breakages.items()}
        assert reported == expected
        stored = _search_all(client, max_pages=5, q=marker)
    # Data line N is source_id N - 1 (feeds.rows numbers rows from 0).
    good = {str(i) for i in range(20) if i + 1 not in breakages}
    assert {item["source"] for item in stored} == {source}
    assert sorted(item["source_id"] for item in stored) == sorted(good)


def test_a_feed_that_is_not_csv_or_ndjson_is_refused_with_a_reason(
    stack: Stack, api_key: str
) -> None:
    with stack.client() as client:
        response = client.post(
            "/api/v1/ingest",
            content=b"\x89PNG\r\n\x1a\n\x00\x00binary",
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "image/png"},
        )
    assert 400 <= response.status_code < 500
    assert "error" in response.json()


def test_an_oversized_body_is_refused_with_413_json(stack: Stack, api_key: str) -> None:
    with stack.client() as client:
        response = client.post(
            "/api/v1/listings",
            content=b"x" * (2 * 1024 * 1024),
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        )
    assert response.status_code == 413
    assert "error" in response.json()


def test_the_viewer_page_renders_search_results(stack: Stack, api_key: str) -> None:
    marker = f"Viewer{uuid.uuid4().hex[:10]}"
    listing = {
        "source": "e2e-viewer",
        "source_id": marker,
        "title": f"{marker} <b>loft</b>",
        "kind": "house",
        "price": 310000,
        "city": "Nantes",
    }
    with stack.client() as client:
        created = client.post(
            "/api/v1/listings", json=listing, headers={"Authorization": f"Bearer {api_key}"}
        )
        assert created.status_code == 201, created.text
        page = client.get("/", params={"q": marker})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert marker in page.text
    assert "&lt;b&gt;loft&lt;/b&gt;" in page.text  # escaped, never injected


def test_the_api_is_rate_limited_per_client_with_429_json(stack: Stack) -> None:
    def hit(_: int) -> httpx.Response:
        with stack.client() as client:
            return client.get("/api/v1/version")

    with ThreadPoolExecutor(max_workers=32) as pool:
        responses = list(pool.map(hit, range(600)))
    limited = [r for r in responses if r.status_code == 429]
    assert limited, "600 requests in a burst were never rate limited"
    assert "error" in limited[0].json()
    assert int(limited[0].headers["retry-after"]) >= 1


def test_invoke_up_twice_changes_nothing(stack: Stack) -> None:
    before = stack.compose_ps()
    again = stack.invoke("up", "--env=e2e")
    after = stack.compose_ps()
    assert before == after, f"containers changed:\n{before}\n{after}\n{again.stdout[-3000:]}"
    with stack.client() as client:
        assert client.get("/ready").status_code == 200

import json
from collections.abc import Callable
from subprocess import Popen
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.integration
KIND_LIST = "apartment, house, studio, land, commercial"


def rows(count: int, price: int = 100_000, source: str = "feed") -> list[dict[str, object]]:
    return [
        {
            "source": source,
            "source_id": f"L{i}",
            "title": f"Listing {i}",
            "kind": "house",
            "price": price + i,
            "city": "Rennes",
            "bedrooms": i % 4,
            "contact_email": f"agent{i}@agency.example",
        }
        for i in range(count)
    ]


async def stored(engine: AsyncEngine, source: str) -> dict[str, tuple[int, int]]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT source_id, id, price FROM listings WHERE source = :s"), {"s": source}
        )
        return {r.source_id: (r.id, r.price) for r in result}


async def test_the_same_feed_twice_upserts_without_duplicates(
    ingest: Any,
    engine: AsyncEngine,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    start_worker()
    job = await ingest.wait(await ingest.post(ingest.csv(rows(1200))))
    assert (job["status"], job["accepted"], job["rejected"]) == ("done", 1200, 0)
    first = await stored(engine, "feed")
    assert len(first) == 1200

    again = await ingest.wait(await ingest.post(ingest.csv(rows(1200))))
    assert (again["status"], again["accepted"]) == ("done", 1200)
    assert await stored(engine, "feed") == first

    changed = await ingest.wait(await ingest.post(ingest.csv(rows(1200, price=500_000))))
    assert changed["status"] == "done"
    updated = await stored(engine, "feed")
    assert {k: v[0] for k, v in updated.items()} == {k: v[0] for k, v in first.items()}
    assert updated["L7"][1] == 500_007


async def test_ndjson_feeds_and_bad_rows_are_reported_by_line(
    ingest: Any,
    engine: AsyncEngine,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    start_worker()
    good = rows(3, source="nd")
    lines = [json.dumps(good[0]), json.dumps({**good[1], "kind": "boat"}), "not json"]
    lines += [json.dumps(good[2]), json.dumps({**good[0], "source_id": "X", "latitude": 91})]
    job = await ingest.wait(
        await ingest.post("\n".join(lines).encode(), content_type="application/x-ndjson")
    )
    assert (job["status"], job["accepted"], job["rejected"]) == ("done", 2, 3)
    assert job["errors"] == [
        {
            "line": 2,
            "field": "kind",
            "message": "must be one of apartment, house, studio, land, commercial",
        },
        {"line": 3, "field": None, "message": "is not valid JSON"},
        {"line": 5, "field": "latitude", "message": "must be a number from -90 to 90"},
    ]
    assert set(await stored(engine, "nd")) == {"L0", "L2"}


async def test_only_the_first_100_errors_are_kept(
    ingest: Any, start_worker: Callable[..., Popen[bytes]], empty_listings: None
) -> None:
    start_worker()
    bad = [{**row, "price": "free"} for row in rows(150)]
    job = await ingest.wait(await ingest.post(ingest.csv(bad)))
    assert (job["status"], job["accepted"], job["rejected"]) == ("done", 0, 150)
    assert len(job["errors"]) == 100


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b"source,source_id,title,kind,price,city\n", "application/json", 415, "text/csv"),
        (b"<html>hello</html>", "text/csv", 400, "lacks required column"),
        (b"hello world", "application/x-ndjson", 400, "not JSON"),
        (b"", "text/csv", 400, "empty"),
    ],
)
async def test_non_feeds_are_refused_naming_the_problem(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    body: bytes,
    content_type: str,
    status: int,
    words: str,
) -> None:
    response = await client.post(
        "/api/v1/ingest", content=body, headers={**auth, "Content-Type": content_type}
    )
    assert response.status_code == status
    assert words in response.json()["detail"]


async def test_an_oversized_feed_is_413_json(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Any
) -> None:
    body = b"source,source_id,title,kind,price,city\n" + b"x" * settings.max_feed_bytes
    response = await client.post(
        "/api/v1/ingest", content=body, headers={**auth, "Content-Type": "text/csv"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload too large"


async def test_ingest_needs_a_key_and_unknown_jobs_are_404(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/ingest", content=b"a,b\n", headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 401
    unknown = "/api/v1/ingest/00000000-0000-0000-0000-000000000000"
    assert (await client.get(unknown)).status_code == 401  # job status needs a key too
    assert (await client.get(unknown, headers=auth)).status_code == 404
    assert (await client.get("/api/v1/ingest/not-a-uuid", headers=auth)).status_code == 422


async def test_rows_the_database_refuses_are_reported_and_the_others_stored(
    ingest: Any,
    engine: AsyncEngine,
    start_worker: Callable[..., Popen[bytes]],
    empty_listings: None,
) -> None:
    """A date in year 1 with a positive offset is valid ISO 8601, but is before year 1 in UTC:
    the database driver cannot store it. It used to fail the whole batch on every attempt, and
    the job was dead-lettered with no row stored."""
    start_worker(worker_batch_size=100)
    good = rows(250, source="refused")
    lines = [json.dumps(row) for row in good]
    lines[57] = json.dumps({**good[57], "listed_at": "0001-01-01T00:00:00+01:00"})
    lines[180] = json.dumps({**good[180], "listed_at": "0001-01-01T00:30:00+02:00"})
    # A lone surrogate (the JSON escape \ud800) is caught by validation, naming the field.
    lines[201] = json.dumps({**good[201], "title": "Flat \ud800"})  # written as an escape
    job = await ingest.wait(
        await ingest.post("\n".join(lines).encode(), content_type="application/x-ndjson")
    )
    assert (job["status"], job["accepted"], job["rejected"], job["attempts"]) == (
        "done",
        247,
        3,
        1,
    ), job
    assert job["errors"] == [
        {"line": 58, "field": None, "message": "could not be stored: date value out of range"},
        {"line": 181, "field": None, "message": "could not be stored: date value out of range"},
        {"line": 202, "field": "title", "message": "is not valid text"},
    ]
    assert set(await stored(engine, "refused")) == {f"L{i}" for i in range(250)} - {
        "L57",
        "L180",
        "L201",
    }

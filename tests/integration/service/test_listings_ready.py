import json
from typing import Any

import httpx
import pytest
from support.waiting import wait_for_async

pytestmark = pytest.mark.integration


async def wait_ready(client: httpx.AsyncClient, status: int, timeout: float = 60) -> dict[str, Any]:
    async def ready() -> tuple[int, str]:
        response = await client.get("/ready")
        return response.status_code, response.text

    _, text = await wait_for_async(
        ready,
        until=lambda answer: answer[0] == status,
        what=f"/ready answering {status}",
        timeout=timeout,
        interval=0.5,
    )
    body: dict[str, Any] = json.loads(text)
    return body


@pytest.mark.parametrize("service", ["postgres", "redis"])
async def test_ready_follows_a_dependency_outage_without_restart(
    client: httpx.AsyncClient, infra: Any, service: str
) -> None:
    assert (await client.get("/ready")).status_code == 200
    infra.stop(service)
    try:
        body = await wait_ready(client, 503, timeout=30)
        assert service in body["failing"]
        assert body["error"].startswith("not ready")
        assert body["detail"][service] != "ok"
        assert (await client.get("/health")).status_code == 200
    finally:
        infra.start(service)
    body = await wait_ready(client, 200, timeout=60)
    assert body["detail"] == {"postgres": "ok", "redis": "ok", "schema": "ok"}


async def _set_revision(engine: Any, revision: str) -> None:
    from sqlalchemy import text

    async with engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


async def test_a_newer_schema_is_ready_and_an_older_one_is_not(
    client: httpx.AsyncClient, engine: Any
) -> None:
    """After a rollback the previous release runs on the schema a newer one migrated to."""
    head = (await client.get("/ready")).json()
    assert head["detail"]["schema"] == "ok"
    try:
        await _set_revision(engine, "0099_from_a_newer_release")
        newer = await client.get("/ready")
        assert newer.status_code == 200, newer.text
        assert "newer than this release" in newer.json()["notes"]["schema"]
        await _set_revision(engine, "0001")
        older = await client.get("/ready")
        assert older.status_code == 503
        assert older.json()["failing"] == ["schema"]
        assert "run `listings migrate`" in older.json()["detail"]["schema"]
    finally:
        from listings.migrate import head_revision

        await _set_revision(engine, head_revision())
    assert (await client.get("/ready")).status_code == 200

import asyncio
import time
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration


async def wait_ready(client: httpx.AsyncClient, status: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get("/ready")
        if response.status_code == status:
            body: dict[str, Any] = response.json()
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"/ready stayed {response.status_code}: {response.text}")
        await asyncio.sleep(0.5)


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

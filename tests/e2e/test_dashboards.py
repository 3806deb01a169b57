"""Every dashboard and console query returns data on the running stack.

Client traffic goes through nginx for as long as this module runs (searches, an unknown path
and a listing that does not exist for 404s, a small feed with a bad row every few seconds so
that the ingest counters and the batch histogram move), bounded in rate and time. Then every
PromQL expression of every Grafana panel (monitoring/dashboards) and of every console template
(monitoring/prometheus/consoles, extracted as tests/unit/ops/test_dashboards_static.py does)
runs against the stack's Prometheus, with Grafana's variables replaced as Grafana would:
$__rate_interval 1m, $__range 1h, $env the env label's value (All, `.*`, when the series carry
none). Any error, empty result or result that is NaN everywhere fails, all listed at once; the
queries are retried until they pass or WAIT_S runs out, as rate() windows need samples. Each
console page must render (200) with every number filled in and no template error.
"""

from __future__ import annotations

import math
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from support.dashboard_queries import (
    CONSOLES,
    DASHBOARDS,
    Query,
    every_query,
    grafana_expr,
)

from ops.perf import feeds

if TYPE_CHECKING:
    from conftest import Stack

pytestmark = pytest.mark.e2e

# Long enough for a fresh Prometheus to hold two scrapes of everything plus the recording
# rules' evaluations (10 s each), on a loaded CI machine.
WAIT_S = 240.0
# The background traffic never runs longer than this, whatever happens to the test.
TRAFFIC_MAX_S = 900.0
FEED_EVERY_S = 8.0
# NaN is an answer for these until something happens that a test stack does not do: the age
# of the last archived WAL segment has no value before the first one is archived.
NAN_UNTIL_FIRST_EVENT = ("pg_stat_archiver_last_archive_age",)
TEMPLATE_ERROR = re.compile(r"error executing template|template: \S+:\d+|<no value>")
# prom_query_drilldown writes "-" where its query returned nothing.
EMPTY_DRILLDOWN = re.compile(r'class="prom_query_drilldown"[^>]*>\s*-\s*</a>')


class Traffic(threading.Thread):
    """Client requests through nginx until stopped (or TRAFFIC_MAX_S): a few per second."""

    def __init__(self, stack: Stack, api_key: str) -> None:
        super().__init__(name="dashboard-traffic", daemon=True)
        self.stack, self.api_key = stack, api_key
        self.stopped = threading.Event()
        self.statuses: Counter[str] = Counter()
        self.feeds_done = 0
        self.error: Exception | None = None

    def run(self) -> None:
        deadline = time.monotonic() + TRAFFIC_MAX_S
        next_feed = 0.0
        try:
            with self.stack.client() as client:
                while not self.stopped.is_set() and time.monotonic() < deadline:
                    if time.monotonic() >= next_feed:
                        self.feed(client)
                        next_feed = time.monotonic() + FEED_EVERY_S
                    for city in feeds.CITIES[:3]:
                        self.get(client, "/api/v1/listings", params={"city": city, "limit": 5})
                    self.get(client, "/api/v1/listings/99999999")
                    self.get(client, f"/api/v1/no-such-route-{uuid.uuid4().hex[:4]}")
                    self.stopped.wait(1.0)
        except Exception as exc:  # a thread's exception is lost unless the test reports it
            self.error = exc

    def get(self, client: httpx.Client, path: str, **kwargs: Any) -> None:
        # A refused or reset connection is counted, not fatal: other modules restart services.
        try:
            response = client.get(path, **kwargs)
        except httpx.TransportError as exc:
            self.statuses[f"GET {type(exc).__name__}"] += 1
            return
        self.statuses[f"GET {response.status_code}"] += 1

    def feed(self, client: httpx.Client) -> None:
        """A 20-row feed whose fourth data line breaks a rule: rows accepted and rejected."""
        auth = {"Authorization": f"Bearer {self.api_key}"}
        rows = list(feeds.rows(20, source=f"e2e-dash-{uuid.uuid4().hex[:8]}"))
        body = feeds.to_csv(feeds.break_rows(rows, {4: 0}))
        try:
            queued = client.post(
                "/api/v1/ingest", content=body, headers={**auth, "Content-Type": "text/csv"}
            )
            self.statuses[f"POST ingest {queued.status_code}"] += 1
            if queued.status_code != 202:
                return
            job = queued.json()["job_id"]
            for _ in range(60):
                status = client.get(f"/api/v1/ingest/{job}", headers=auth).json()["status"]
                if status in ("done", "failed"):
                    self.feeds_done += status == "done"
                    return
                time.sleep(0.5)
        except httpx.TransportError as exc:
            self.statuses[f"POST ingest {type(exc).__name__}"] += 1


@pytest.fixture(scope="module")
def traffic(stack: Stack, api_key: str) -> Iterator[Traffic]:
    sender = Traffic(stack, api_key)
    sender.start()
    try:
        yield sender
    finally:
        sender.stopped.set()
        sender.join(timeout=60)


def prometheus(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.prometheus_port}"


def env_value(base: str) -> str:
    """What Grafana's env variable selects: the stack's env label, or All (`.*`) without one.

    env is Prometheus' external label: added where series leave it (federation, remote write,
    alerts), not stored with them, so an environment's own Prometheus usually has none."""
    response = httpx.get(f"{base}/api/v1/label/env/values", params={"match[]": "up"}, timeout=10)
    response.raise_for_status()
    values = response.json()["data"]
    return values[0] if len(values) == 1 else ".*"


def problem(base: str, query: Query, expr: str) -> str | None:
    """Why this expression does not return data now, or None when it does."""
    response = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=30)
    body = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        return f"{query.where}: error {body.get('errorType')}: {body.get('error')}\n    {expr}"
    data = body["data"]
    if data["resultType"] == "scalar":
        values = [data["result"][1]]
    else:
        values = [sample["value"][1] for sample in data["result"]]
    if not values:
        return f"{query.where}: empty result\n    {expr}"
    if all(math.isnan(float(v)) for v in values) and not any(
        name in expr for name in NAN_UNTIL_FIRST_EVENT
    ):
        return f"{query.where}: NaN only (no samples in the window?)\n    {expr}"
    return None


def test_every_dashboard_and_console_query_returns_data(stack: Stack, traffic: Traffic) -> None:
    base = prometheus(stack)
    env = env_value(base)
    queries = every_query()
    exprs = {query: grafana_expr(query.expr, env) for query in queries}
    assert all("$" not in expr for expr in exprs.values()), "a Grafana variable left unreplaced"

    started = time.monotonic()
    while True:
        failures = [p for q in queries if (p := problem(base, q, exprs[q]))]
        if not failures or time.monotonic() - started > WAIT_S or traffic.error:
            break
        time.sleep(5)

    dashboards = sum(1 for q in queries if ".json" in q.where)
    print(
        f"\n{len(queries)} expressions ({dashboards} from {len(DASHBOARDS)} dashboards, "
        f"{len(queries) - dashboards} from {len(CONSOLES)} consoles), env={env!r}: "
        f"{len(queries) - len(failures)} returned data after {time.monotonic() - started:.0f}s; "
        f"traffic so far {dict(traffic.statuses)}, feeds done {traffic.feeds_done}"
    )
    assert traffic.error is None, f"the traffic thread failed: {traffic.error!r}"
    assert not failures, f"{len(failures)} of {len(queries)} queries:\n" + "\n".join(failures)


@pytest.mark.parametrize("path", CONSOLES, ids=lambda p: p.name)
def test_a_console_renders_every_number_without_template_errors(
    stack: Stack, traffic: Traffic, path: Path
) -> None:
    url = f"{prometheus(stack)}/consoles/{path.name}"
    deadline = time.monotonic() + WAIT_S
    while True:
        response = httpx.get(url, timeout=30)
        empty = EMPTY_DRILLDOWN.findall(response.text)
        if (response.status_code == 200 and not empty) or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert response.status_code == 200, f"{url}: {response.status_code}\n{response.text[:3000]}"
    assert not TEMPLATE_ERROR.search(response.text), response.text[:3000]
    assert not empty, f"{url}: {len(empty)} numbers without data: {empty}"
    assert "<h1>" in response.text

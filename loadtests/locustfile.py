"""Slipway's users for locust: searchers, viewers and a rare authenticated ingester.

Run it through `python -m ops.perf.loadtest` (or `nox -s loadtest -- --env=local --profile=smoke`),
which passes the environment's URL as --host and its CA in SLIPWAY_LOADTEST_CA, and judges
the run against loadtests/slo.yaml. Weights and waits come from ops.perf.loadtest.USERS, where the
request rate a profile can reach is computed from them: every task sends exactly one request.

Requests are named by route template (`/api/v1/listings/{id}`), so stats group per endpoint.
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections import deque
from typing import Any
from urllib.parse import urlencode

import gevent
import gevent.ssl
from locust import FastHttpUser, between, events, stats, task

from ops.perf import feeds
from ops.perf.loadtest import (
    API_KEY_VAR,
    CA_VAR,
    DETAIL_PATH,
    INGEST_PATH,
    INGEST_STATUS_PATH,
    SEARCH_PATH,
    USERS,
    VIEWER_PATH,
)

log = logging.getLogger("slipway.loadtest")
rng = random.Random()  # load shapes, not cryptography

CA_FILE = os.environ.get(CA_VAR, "")
API_KEY = os.environ.get(API_KEY_VAR, "")

LOADTEST_SOURCE = "slipway-loadtest"  # the `source` of every listing the ingester writes
FEED_ROWS = 50  # per feed: the same 50 (source, source_id) pairs, updated by every feed
MAX_POLLS = 5
PAGES_PER_SEARCH = (0, 3)  # extra pages a searcher follows through next_cursor
LISTING_LINK = re.compile(r'href="/api/v1/listings/(\d+)"')
NEXT_LINK = re.compile(r'<a rel="next" href="/\?([^"]+)"')
# Ids seen in any result: a viewer with nothing of its own opens one of these.
SEEN_IDS: deque[int] = deque(maxlen=2000)
PRICE_BANDS = ((0, 200_000), (150_000, 400_000), (300_000, 800_000), (600_000, 2_000_000))


def _tls_context(**_: Any) -> gevent.ssl.SSLContext:
    """Verify the environment's certificate with its CA (the system CAs when none is given)."""
    return gevent.ssl.create_default_context(cafile=CA_FILE or None)


def search_filters(chance: random.Random) -> dict[str, str]:
    """A filter combination people use: mostly a city, often a kind, sometimes a budget."""
    params: dict[str, str] = {}
    if chance.random() < 0.8:
        params["city"] = chance.choice(feeds.CITIES)
    if chance.random() < 0.5:
        params["kind"] = chance.choice(feeds.KINDS)
    if chance.random() < 0.4:
        low, high = chance.choice(PRICE_BANDS)
        if chance.random() < 0.5:
            params["min_price"] = str(low)
        params["max_price"] = str(high)
    if chance.random() < 0.3:
        params["bedrooms"] = str(chance.randint(1, 4))
    if chance.random() < 0.2:
        params["q"] = chance.choice(feeds.WORDS)
    return params


@events.init.add_listener
def _note_disabled_ingester(**_: Any) -> None:
    if not API_KEY:
        log.warning("%s is not set: the Ingester user is disabled", API_KEY_VAR)


@events.test_stop.add_listener
def _let_the_csv_catch_up(**_: Any) -> None:
    # locust rewrites <prefix>_stats.csv once a second and not again at exit: without this
    # pause (users are stopped by now) the CSV that ops.perf.loadtest judges misses the last second.
    gevent.sleep(stats.CSV_STATS_INTERVAL_SEC + 0.5)


class SlipwayUser(FastHttpUser):
    """Verified TLS, and a result per request that names the status it got."""

    abstract = True
    insecure = False
    ssl_context_factory = staticmethod(_tls_context)
    network_timeout = 30.0
    connection_timeout = 10.0

    def call(self, method: str, path: str, name: str, expected: int, **kwargs: Any) -> Any | None:
        """One request, judged: the response when it had the expected status, else None."""
        with self.client.request(method, path, name=name, catch_response=True, **kwargs) as resp:
            status = resp.status_code
            if status == expected:
                resp.success()
                return resp
            if status == 429:
                resp.failure("HTTP 429 Too Many Requests (nginx rate limit)")
            elif not status:
                resp.failure(f"no response: {type(resp.error).__name__}")
            else:
                resp.failure(f"HTTP {status}, expected {expected}")
            return None


class Searcher(SlipwayUser):
    """Searches the API with filters and pages through the results with next_cursor."""

    weight = USERS["Searcher"].weight
    wait_time = between(USERS["Searcher"].min_wait_s, USERS["Searcher"].max_wait_s)

    def on_start(self) -> None:
        self.filters: dict[str, str] = {}
        self.cursor: str | None = None
        self.pages_left = 0

    @task
    def search(self) -> None:
        params = dict(self.filters)
        if self.cursor and self.pages_left > 0:
            params["cursor"] = self.cursor
            self.pages_left -= 1
        else:
            self.filters = search_filters(rng)
            self.pages_left = rng.randint(*PAGES_PER_SEARCH)
            params = dict(self.filters)
        resp = self.call("GET", f"{SEARCH_PATH}?{urlencode(params)}", SEARCH_PATH, 200)
        if resp is None:
            self.cursor = None
            return
        body = resp.json()
        SEEN_IDS.extend(item["id"] for item in body.get("items", []))
        self.cursor = body.get("next_cursor")


class Viewer(SlipwayUser):
    """Uses the HTML viewer: a search page, then opens listings from it, sometimes next page."""

    weight = USERS["Viewer"].weight
    wait_time = between(USERS["Viewer"].min_wait_s, USERS["Viewer"].max_wait_s)

    def on_start(self) -> None:
        self.to_open: list[int] = []
        self.next_query: str | None = None

    @task
    def browse(self) -> None:
        if self.to_open:
            listing = self.to_open.pop()
            self.call("GET", DETAIL_PATH.format(id=listing), DETAIL_PATH, 200)
            return
        if self.next_query and rng.random() < 0.5:
            query, self.next_query = self.next_query, None
        else:
            query = urlencode(search_filters(rng))
        resp = self.call("GET", f"{VIEWER_PATH}?{query}", VIEWER_PATH, 200)
        if resp is None:
            return
        page = resp.text or ""
        ids = [int(found) for found in LISTING_LINK.findall(page)]
        SEEN_IDS.extend(ids)
        pool = ids or list(SEEN_IDS)
        self.to_open = rng.sample(pool, min(len(pool), rng.randint(1, 3)))
        found = NEXT_LINK.search(page)
        self.next_query = found.group(1).replace("&amp;", "&") if found else None


class Ingester(SlipwayUser):
    """Posts a small CSV feed with an API key, polls its job, pauses: a partner's sync job."""

    abstract = not API_KEY  # no key, no ingester (the note above says so), never a failure
    fixed_count = USERS["Ingester"].fixed_count
    poll_s = USERS["Ingester"].min_wait_s
    pause_s = (USERS["Ingester"].max_wait_s / 2, USERS["Ingester"].max_wait_s)

    def on_start(self) -> None:
        self.job: str | None = None
        self.polls = 0
        self.auth = {"Authorization": f"Bearer {API_KEY}"}

    def wait_time(self) -> float:
        return self.poll_s if self.job else rng.uniform(*self.pause_s)

    @task
    def ingest(self) -> None:
        if self.job:
            self.poll()
            return
        rows = feeds.rows(FEED_ROWS, source=LOADTEST_SOURCE, seed=rng.randrange(1 << 30))
        resp = self.call(
            "POST",
            INGEST_PATH,
            INGEST_PATH,
            202,
            data=feeds.to_csv(rows),
            headers={**self.auth, "Content-Type": "text/csv"},
        )
        if resp is not None:
            self.job = resp.json()["job_id"]
            self.polls = 0

    def poll(self) -> None:
        path = INGEST_STATUS_PATH.format(id=self.job)
        resp = self.call("GET", path, INGEST_STATUS_PATH, 200, headers=self.auth)
        self.polls += 1
        status = resp.json().get("status") if resp is not None else None
        if status not in ("queued", "running") or self.polls >= MAX_POLLS:
            self.job = None

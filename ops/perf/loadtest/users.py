"""What the locustfile and the gate share: the request names (route templates), the endpoint
keys of slo.yaml, nginx's rate-limit zones, the user classes with their weights and waits, and the
environment variables the gate hands to locust.

The request rates the gate computes from USERS are the ones the locustfile can produce: it takes
its weights and waits from here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

API_KEY_VAR = "SLIPWAY_LOADTEST_API_KEY"  # enables the ingester; never printed
CA_VAR = "SLIPWAY_LOADTEST_CA"  # CA file the locustfile verifies HTTPS with ("" = system CAs)

# Request names (locust's `name=`): route templates, so stats group per endpoint, never per id.
SEARCH_PATH = "/api/v1/listings"
DETAIL_PATH = "/api/v1/listings/{id}"
VIEWER_PATH = "/"
INGEST_PATH = "/api/v1/ingest"
INGEST_STATUS_PATH = "/api/v1/ingest/{id}"
# Endpoint keys: "<method> <name>", the keys of slo.yaml's `endpoints`.
SEARCH = f"GET {SEARCH_PATH}"
DETAIL = f"GET {DETAIL_PATH}"
VIEWER = f"GET {VIEWER_PATH}"
INGEST = f"POST {INGEST_PATH}"
INGEST_STATUS = f"GET {INGEST_STATUS_PATH}"
AGGREGATED = "Aggregated"

# nginx limit_req zones per client IP (nginx/templates/00-http.conf.template).
ZONE_API = "/api"
ZONE_VIEWER = "viewer /"


@dataclass(frozen=True)
class UserModel:
    """One locust user class: its share of the users, its pace, where its requests go.

    Every task of every class sends exactly one request and waits at least `min_wait_s` after
    it, so one user sends at most 1 / min_wait_s requests per second to any one zone.
    """

    name: str
    weight: int
    fixed_count: int  # users of this class regardless of --users (0: by weight)
    min_wait_s: float
    max_wait_s: float
    endpoints: tuple[str, ...]
    zones: tuple[str, ...]
    needs_api_key: bool = False

    @property
    def max_rate(self) -> float:
        """Most requests per second one such user sends."""
        return 1.0 / self.min_wait_s


USERS: dict[str, UserModel] = {
    model.name: model
    for model in (
        UserModel("Searcher", 2, 0, 1.0, 3.0, (SEARCH,), (ZONE_API,)),
        UserModel("Viewer", 1, 0, 1.0, 3.0, (VIEWER, DETAIL), (ZONE_VIEWER, ZONE_API)),
        # Polls its job every 2 s, then pauses up to 30 s before the next feed.
        UserModel(
            "Ingester", 0, 1, 2.0, 30.0, (INGEST, INGEST_STATUS), (ZONE_API,), needs_api_key=True
        ),
    )
}


def enabled_users(api_key: str) -> list[UserModel]:
    """The user classes that run: the ingester only with an API key."""
    return [m for m in USERS.values() if api_key or not m.needs_api_key]


def expected_endpoints(users: Sequence[UserModel]) -> list[str]:
    return [endpoint for model in users for endpoint in model.endpoints]


def allocation(total: int, users: Sequence[UserModel]) -> dict[str, int]:
    """At most how many users of each class locust starts for `total` users."""
    fixed = sum(m.fixed_count for m in users)
    rest = max(0, total - fixed)
    weights = sum(m.weight for m in users if not m.fixed_count)
    return {
        m.name: m.fixed_count or (math.ceil(rest * m.weight / weights) if weights else 0)
        for m in users
    }


def zone_rates(total: int, users: Sequence[UserModel]) -> dict[str, float]:
    """Most requests per second the whole profile sends to each nginx zone, from one client."""
    counts = allocation(total, users)
    rates: dict[str, float] = {}
    for model in users:
        for zone in model.zones:
            rates[zone] = rates.get(zone, 0.0) + counts[model.name] * model.max_rate
    return rates

"""The watch after a deploy's switch: the new release's error ratio, from Prometheus.

The checks before and after the switch send a few requests of our choosing; the watch judges the
requests the clients sent. For `deploy.watch` seconds after the switch (the steps after it count
towards them), the deploy asks the environment's Prometheus, every WATCH_INTERVAL seconds, how many
requests the new release's replicas answered since the switch and how many of those were 5xx:
`listings_http_requests_total` (its health, readiness and metrics routes left out) of the
instances whose `listings_build_info` names the release, now minus at the switch (a replica
reused from a standby counted requests before it). Once at least `deploy.watch_min_requests`
arrived, a share of 5xx above `deploy.watch_error_percent` fails the step, which switches the
traffic back (the automatic rollback, instant while the previous release is on standby). Fewer
requests than that are not judged, and the note says so.

Prometheus scrapes every 10 s (`SLIPWAY_SCRAPE_INTERVAL`) and looks the replicas up in DNS every
10 s: what the last seconds of the window brought may not be counted yet. A Prometheus that does
not answer is a warning, never a rollback: the watch is a net under the release, not a gate on
the monitoring.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from ops import config
from ops.errors import OpsError
from ops.executor import Executor

WATCH_INTERVAL = 5.0
# Routes that are not the clients': probes and scrapes.
NOT_CLIENTS = "/health|/ready|/metrics"
_RELEASE = re.compile(r"^[A-Za-z0-9._-]+$")

# ask(promql, at): the value of a query that sums to one number (0 when it has no series), at
# a time (seconds since the epoch; None: now). Raises OpsError when Prometheus does not answer.
Ask = Callable[[str, float | None], float]


def now() -> float:
    """The clock the watch reads (seconds since the epoch; tests move it)."""
    return time.time()


def pause(seconds: float) -> None:
    time.sleep(seconds)


class Unanswered(OpsError):
    """Prometheus could not be asked, or its answer not read: the watch cannot judge."""


def requests_of(release: str, errors: bool = False) -> str:
    """PromQL: the requests (or the 5xx answers) the release's replicas counted so far."""
    if not _RELEASE.match(release):
        raise OpsError(f"internal: release id {release!r} cannot go into a query")
    status = ',status=~"5.."' if errors else ""
    return (
        f'sum(listings_http_requests_total{{job="api",route!~"{NOT_CLIENTS}"{status}}} '
        f"* on(instance) group_left() max by (instance) "
        f'(listings_build_info{{job="api",release="{release}"}}))'
    )


@dataclass(frozen=True)
class Count:
    requests: float
    errors: float

    def since(self, before: Count) -> Count:
        # A replica that restarted starts its counters again: never below zero.
        return Count(
            max(0.0, self.requests - before.requests), max(0.0, self.errors - before.errors)
        )

    @property
    def percent(self) -> float:
        return 100.0 * self.errors / self.requests if self.requests else 0.0


def count(ask: Ask, release: str, at: float | None = None) -> Count:
    return Count(ask(requests_of(release), at), ask(requests_of(release, errors=True), at))


@dataclass
class Watch:
    """Judge `release` from `since` (the switch, seconds since the epoch) for `seconds`."""

    ask: Ask
    release: str
    since: float
    seconds: float
    max_percent: float
    min_requests: int
    log: Callable[[str], None] = print

    def run(self) -> str:
        before = count(self.ask, self.release, self.since)
        deadline = self.since + self.seconds
        seen = Count(0.0, 0.0)
        while True:
            seen = count(self.ask, self.release).since(before)
            self.judge(seen)
            left = deadline - now()
            if left <= 0:
                break
            self.log(
                f"    {seen.requests:.0f} request(s) since the switch, {seen.errors:.0f} "
                f"answered 5xx; watching {left:.0f}s more"
            )
            pause(min(WATCH_INTERVAL, left))
        what = (
            f"{seen.requests:.0f} request(s) in {self.seconds:.0f}s after the switch, "
            f"{seen.errors:.0f} answered 5xx ({seen.percent:.1f}%)"
        )
        if seen.requests < self.min_requests:
            return f"{what}: fewer than deploy.watch_min_requests ({self.min_requests}), not judged"
        return f"{what}, within deploy.watch_error_percent ({self.max_percent:g}%)"

    def judge(self, seen: Count) -> None:
        if seen.requests >= self.min_requests and seen.percent > self.max_percent:
            raise OpsError(
                f"the new release answered {seen.errors:.0f} of {seen.requests:.0f} requests "
                f"with 5xx since the switch ({seen.percent:.1f}%, above deploy."
                f"watch_error_percent {self.max_percent:g}%), as Prometheus counted them"
            )


def value_of(answer: object) -> float:
    """The number in a Prometheus instant query's JSON answer (0 when no series)."""
    data = answer.get("data") if isinstance(answer, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(result, list):
        raise Unanswered(f"Prometheus gave an answer without a result: {str(answer)[:200]}")
    if not result:
        return 0.0
    try:
        return float(result[0]["value"][1])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise Unanswered(f"Prometheus gave an unexpected result: {str(result)[:200]}") from exc


def asker(base: str, timeout: float = 5.0) -> Ask:
    """Instant queries against the Prometheus at `base` (an http:// URL)."""

    def ask(promql: str, at: float | None) -> float:
        params = {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {})}
        url = f"{base}/api/v1/query?{urllib.parse.urlencode(params)}"
        try:
            # An http:// URL of our own tunnel, never user input.
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310  # nosec B310
                return value_of(json.loads(response.read()))
        except (OSError, ValueError) as exc:
            raise Unanswered(f"Prometheus at {base} did not answer: {exc}") from exc

    return ask


@contextmanager
def prometheus(env: config.Environment, remote: Executor) -> Iterator[Ask]:
    """The environment's Prometheus, through a tunnel over `remote`, an SSH connection of the
    watch's own (closed with the tunnel)."""
    from ops.monitoring import monitor
    from ops.remote import Remote

    if not isinstance(remote, Remote):
        raise Unanswered("the watch reaches Prometheus over SSH only")
    with ExitStack() as stack:
        try:
            at = stack.enter_context(monitor.reachable(env, remote))
        except OpsError as exc:
            raise Unanswered(f"no tunnel to Prometheus: {exc}") from exc
        yield asker(at.prometheus)

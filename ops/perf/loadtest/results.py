"""locust's CSV reports read back (one row per endpoint, 429s counted apart), judged against
the SLOs, and printed as one line per endpoint."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ops.errors import OpsError
from ops.perf.loadtest.files import Slo, SloSet
from ops.perf.loadtest.users import AGGREGATED

_STATUS_429_RE = re.compile(r"\b429\b")


@dataclass(frozen=True)
class EndpointStats:
    """One row of locust's <prefix>_stats.csv, with the 429s of <prefix>_failures.csv."""

    name: str  # "GET /api/v1/listings" or "Aggregated"
    requests: int
    failures: int
    p95_ms: float | None
    p99_ms: float | None
    rate_limited: int = 0  # failures that were HTTP 429

    @property
    def error_percent(self) -> float:
        return 100.0 * self.failures / self.requests if self.requests else 0.0


def _percentile(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None  # "N/A": no requests


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError as exc:
        raise OpsError(f"cannot read locust report {path}: {exc.strerror or exc}") from exc


def parse_failures(path: Path) -> dict[str, int]:
    """HTTP 429 occurrences per endpoint in locust's <prefix>_failures.csv."""
    counts: dict[str, int] = {}
    if not path.exists():
        return counts
    for row in _read_csv(path):
        if _STATUS_429_RE.search(row.get("Error", "")):
            name = f"{row.get('Method', '')} {row.get('Name', '')}"
            counts[name] = counts.get(name, 0) + int(row.get("Occurrences") or 0)
    return counts


def parse_stats(stats: Path, failures: Path | None = None) -> list[EndpointStats]:
    """Rows of locust's <prefix>_stats.csv, the Aggregated row last."""
    rows = _read_csv(stats)
    needed = {"Type", "Name", "Request Count", "Failure Count", "95%", "99%"}
    if rows and not needed <= set(rows[0]):
        missing = ", ".join(sorted(needed - set(rows[0])))
        raise OpsError(f"{stats}: not a locust stats file (missing columns: {missing})")
    limited = parse_failures(failures) if failures else {}
    result: list[EndpointStats] = []
    for row in rows:
        name = row["Name"] if row["Name"] == AGGREGATED else f"{row['Type']} {row['Name']}"
        result.append(
            EndpointStats(
                name=name,
                requests=int(row["Request Count"] or 0),
                failures=int(row["Failure Count"] or 0),
                p95_ms=_percentile(row["95%"]),
                p99_ms=_percentile(row["99%"]),
                rate_limited=(
                    sum(limited.values()) if name == AGGREGATED else limited.get(name, 0)
                ),
            )
        )
    result.sort(key=lambda s: s.name == AGGREGATED)
    return result


@dataclass(frozen=True)
class Verdict:
    stats: EndpointStats
    breaches: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.breaches


def _judge(stats: EndpointStats, slo: Slo) -> tuple[str, ...]:
    breaches: list[str] = []
    if stats.error_percent > slo.max_error_percent:
        detail = f"{stats.failures} of {stats.requests} failed"
        if stats.rate_limited:
            detail += (
                f", {stats.rate_limited} of them HTTP 429: rate limited by nginx, not a service "
                "error (raise the environment's nginx limits or spread the load over more IPs)"
            )
        breaches.append(
            f"{stats.name} errors {stats.error_percent:.2f}% > {slo.max_error_percent:g}% "
            f"({detail})"
        )
    for label, value, limit in (
        ("p95", stats.p95_ms, slo.p95_ms),
        ("p99", stats.p99_ms, slo.p99_ms),
    ):
        if value is not None and value > limit:
            breaches.append(f"{stats.name} {label} {value:.0f} ms > {limit:g} ms")
    return tuple(breaches)


def evaluate(
    stats: Sequence[EndpointStats], slos: SloSet, expected: Sequence[str]
) -> tuple[list[Verdict], list[str]]:
    """A verdict per row and every breach by name, including endpoints left unexercised."""
    verdicts: list[Verdict] = []
    seen = {s.name: s for s in stats}
    for name in expected:
        if name not in seen:
            seen[name] = EndpointStats(name, 0, 0, None, None)
    others = sorted(name for name in seen if name not in expected and name != AGGREGATED)
    rows = [seen[name] for name in [*expected, *others]]
    aggregated = seen.get(AGGREGATED, EndpointStats(AGGREGATED, 0, 0, None, None))
    breaches: list[str] = []
    for row in [*rows, aggregated]:
        found = list(_judge(row, slos.for_endpoint(row.name)))
        if row.requests == 0 and row.name in expected:
            found.insert(0, f"{row.name} got no requests (the profile's users exercise it)")
        if row.name == AGGREGATED and row.requests == 0:
            found.insert(0, "no requests were sent at all: nothing was load-tested")
        verdicts.append(Verdict(row, tuple(found)))
        breaches.extend(found)
    return verdicts, breaches


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table(verdicts: Sequence[Verdict]) -> list[str]:
    """endpoint, requests, errors %, 429s, p95, p99, verdict: one line each."""
    width = max([len("endpoint"), *(len(v.stats.name) for v in verdicts)])
    head = ("requests", "errors %", "429s", "p95 ms", "p99 ms")
    lines = [f"{'endpoint':<{width}}" + "".join(f"  {h:>8}" for h in head) + "  verdict"]
    for v in verdicts:
        s = v.stats
        cells = (
            str(s.requests),
            f"{s.error_percent:.2f}",
            str(s.rate_limited),
            _ms(s.p95_ms),
            _ms(s.p99_ms),
        )
        verdict = "PASS" if v.ok else "BREACH"
        lines.append(f"{s.name:<{width}}" + "".join(f"  {c:>8}" for c in cells) + f"  {verdict}")
    return lines

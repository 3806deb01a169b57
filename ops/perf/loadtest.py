"""Load tests that gate releases: run loadtests/locustfile.py headless, judge it against SLOs.

`python -m ops.perf.loadtest --env=<name> --profile=<smoke|baseline|stress>` loads the profile
(loadtests/profiles.yaml) and the SLOs (loadtests/slo.yaml), checks that the profile stays
within the environment's nginx rate limits when it claims to, runs locust against the
environment's HTTPS URL with its CA, writes CSV and HTML reports, prints one line per endpoint
and exits 1 naming every breach. A run that sent nothing, or left an endpoint of its users
unexercised, is a breach too: a load test that did not load must not pass.

The user classes of the locustfile take their weights and waits from USERS below, so the
request rates computed here are the ones the locustfile can produce. locust is run as a
separate process (it monkey-patches the standard library with gevent when imported).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import subprocess  # nosec B404: argv lists built here, never a shell string
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from ops import config, paths, proc
from ops.errors import OpsError

LOADTESTS_DIR = paths.REPO_ROOT / "loadtests"
LOCUSTFILE = LOADTESTS_DIR / "locustfile.py"
PROFILES_FILE = LOADTESTS_DIR / "profiles.yaml"
SLO_FILE = LOADTESTS_DIR / "slo.yaml"
DEFAULT_REPORTS = Path("reports") / "loadtest"

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

EXIT_BREACH = 1
EXIT_ERROR = 2


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

_RUN_TIME_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_ENDPOINT_RE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE|HEAD) /\S*$")
_STATUS_429_RE = re.compile(r"\b429\b")


# ------------------------------------------------------------------------------ files


class _Reader:
    """Typed access to a YAML mapping; errors name the file, the field and the fix."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str, fix: str) -> OpsError:
        place = f"field '{where}'" if where else "top level"
        return OpsError(f"{self.path}: {place} {problem}. Fix: {fix}")

    def load(self) -> Mapping[str, Any]:
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise OpsError(f"{self.path}: cannot read: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise OpsError(f"{self.path}: not valid YAML: {exc}") from exc
        return self.mapping(data, "")

    def mapping(self, value: object, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"must be a mapping, got {value!r}", "write key: value pairs")
        return value

    def keys(
        self, data: Mapping[str, Any], where: str, required: set[str], optional: set[str]
    ) -> None:
        allowed = required | optional
        prefix = f"{where}." if where else ""
        for key in data:
            if key not in allowed:
                raise self.fail(
                    f"{prefix}{key}",
                    "is unknown",
                    f"remove it or use one of: {', '.join(sorted(allowed))}",
                )
        for key in sorted(required - set(data)):
            raise self.fail(f"{prefix}{key}", "is missing", f"add '{key}:'")

    def number(self, data: Mapping[str, Any], key: str, where: str, zero: bool = False) -> float:
        value = data.get(key)
        expected = "a number >= 0" if zero else "a number above 0"
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or value < 0
            or (value == 0 and not zero)
        ):
            raise self.fail(where, f"must be {expected}, got {value!r}", f"write {expected}")
        return float(value)

    def integer(self, data: Mapping[str, Any], key: str, where: str, minimum: int) -> int:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(
                where, f"must be an integer >= {minimum}, got {value!r}", f"write e.g. {minimum}"
            )
        return value


def run_time_seconds(text: str) -> int:
    """Seconds in a locust run time ("30s", "5m", "1h30m", "90")."""
    text = text.strip()
    if text.isdigit():
        seconds = int(text)
    else:
        match = _RUN_TIME_RE.match(text)
        if not match or not any(match.groups()):
            raise ValueError(text)
        hours, minutes, secs = (int(group or 0) for group in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds <= 0:
        raise ValueError(text)
    return seconds


@dataclass(frozen=True)
class Profile:
    """How much load, for how long (one entry of profiles.yaml)."""

    name: str
    users: int
    spawn_rate: float
    run_time: str
    within_rate_limits: bool
    description: str = ""


def load_profiles(path: Path = PROFILES_FILE) -> dict[str, Profile]:
    """Every profile of profiles.yaml, validated."""
    reader = _Reader(path)
    top = reader.load()
    reader.keys(top, "", {"version", "profiles"}, set())
    reader.integer(top, "version", "version", 1)
    entries = reader.mapping(top["profiles"], "profiles")
    if not entries:
        raise reader.fail("profiles", "is empty", "define at least one profile (e.g. smoke)")
    minimum_users = sum(m.fixed_count or 1 for m in USERS.values())
    profiles: dict[str, Profile] = {}
    for name, raw in entries.items():
        where = f"profiles.{name}"
        data = reader.mapping(raw, where)
        reader.keys(
            data,
            where,
            {"users", "spawn_rate", "run_time", "within_rate_limits"},
            {"description"},
        )
        users = reader.integer(data, "users", f"{where}.users", 1)
        if users < minimum_users:
            raise reader.fail(
                f"{where}.users",
                f"is {users}, fewer than one user per user class ({', '.join(USERS)})",
                f"set users: {minimum_users} or more, so every endpoint is exercised",
            )
        run_time = data["run_time"]
        try:
            run_time_seconds(str(run_time))
        except ValueError:
            raise reader.fail(
                f"{where}.run_time",
                f"is {run_time!r}, not a run time",
                "write seconds, minutes or hours like 30s, 5m, 1h30m",
            ) from None
        within = data["within_rate_limits"]
        if not isinstance(within, bool):
            raise reader.fail(
                f"{where}.within_rate_limits",
                f"must be true or false, got {within!r}",
                "true when the profile must stay below nginx's per-client limits",
            )
        profiles[str(name)] = Profile(
            name=str(name),
            users=users,
            spawn_rate=reader.number(data, "spawn_rate", f"{where}.spawn_rate"),
            run_time=str(run_time),
            within_rate_limits=within,
            description=str(data.get("description", "")),
        )
    return profiles


def load_profile(name: str, path: Path = PROFILES_FILE) -> Profile:
    profiles = load_profiles(path)
    if name not in profiles:
        raise OpsError(
            f"{path}: no profile {name!r}. Fix: use --profile with one of: {', '.join(profiles)}"
        )
    return profiles[name]


@dataclass(frozen=True)
class Slo:
    """Thresholds one endpoint must meet."""

    max_error_percent: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class SloSet:
    """slo.yaml: a default for every endpoint (and the Aggregated row) plus per-endpoint ones."""

    path: Path
    version: int
    default: Slo
    endpoints: dict[str, Slo] = field(default_factory=dict)

    def for_endpoint(self, name: str) -> Slo:
        return self.endpoints.get(name, self.default)


_SLO_FIELDS = {"max_error_percent", "p95_ms", "p99_ms"}


def _slo(reader: _Reader, data: Mapping[str, Any], where: str, base: Slo | None) -> Slo:
    reader.keys(data, where, set() if base else _SLO_FIELDS, _SLO_FIELDS)
    values: dict[str, float] = {}
    for key in sorted(_SLO_FIELDS):
        if key in data:
            zero = key == "max_error_percent"
            values[key] = reader.number(data, key, f"{where}.{key}", zero=zero)
        elif base is not None:
            values[key] = getattr(base, key)
    slo = Slo(**values)
    if slo.max_error_percent > 100:
        raise reader.fail(
            f"{where}.max_error_percent",
            f"is {slo.max_error_percent:g}, above 100",
            "write a percentage between 0 and 100 (1 = one failed request in a hundred)",
        )
    if slo.p99_ms < slo.p95_ms:
        raise reader.fail(
            f"{where}.p99_ms",
            f"is {slo.p99_ms:g}, below p95_ms {slo.p95_ms:g}",
            "p99 is the slower tail: make p99_ms >= p95_ms",
        )
    return slo


def load_slos(path: Path = SLO_FILE) -> SloSet:
    """slo.yaml, validated; endpoint entries inherit the fields they leave out from `default`."""
    reader = _Reader(path)
    top = reader.load()
    reader.keys(top, "", {"version", "default"}, {"endpoints"})
    version = reader.integer(top, "version", "version", 1)
    default = _slo(reader, reader.mapping(top["default"], "default"), "default", None)
    endpoints: dict[str, Slo] = {}
    raw = top.get("endpoints") or {}
    for name, entry in reader.mapping(raw, "endpoints").items():
        where = f"endpoints.{name}"
        if name != AGGREGATED and not _ENDPOINT_RE.match(str(name)):
            raise reader.fail(
                where,
                "is not an endpoint name",
                f"write '<METHOD> <route template>' as locust names it, e.g. '{DETAIL}'",
            )
        endpoints[str(name)] = _slo(reader, reader.mapping(entry, where), where, default)
    return SloSet(path=path, version=version, default=default, endpoints=endpoints)


# ------------------------------------------------------------------------------ planning


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


def zone_limits(environment: config.Environment) -> dict[str, tuple[int, str]]:
    """Per-client rate of each zone and the environment field that sets it."""
    return {
        ZONE_API: (environment.nginx.rate_limit, "nginx.rate_limit"),
        ZONE_VIEWER: (environment.nginx.viewer_rate_limit, "nginx.viewer_rate_limit"),
    }


def check_rate_limits(
    profile: Profile, environment: config.Environment, users: Sequence[UserModel]
) -> list[str]:
    """Zones the profile can push past nginx's per-client limit, one line each.

    A profile that claims to stay within the limits and does not is refused (OpsError): its
    result would measure nginx's 429s, not the service.
    """
    over: list[str] = []
    limits = zone_limits(environment)
    for zone, rate in sorted(zone_rates(profile.users, users).items()):
        limit, knob = limits[zone]
        if rate > limit:
            over.append(
                f"{zone}: up to {rate:.1f} req/s from one client, above {knob}: {limit} req/s"
            )
    if over and profile.within_rate_limits:
        raise OpsError(
            f"profile {profile.name!r} ({profile.users} users) must stay within the rate limits "
            f"of {environment.source} but can exceed them ({'; '.join(over)}). Fix: lower "
            f"users in {PROFILES_FILE.name}, or raise the limits in {environment.source}"
        )
    return over


def ca_file(environment: config.Environment) -> str:
    """CA file that verifies the environment's HTTPS (Environment.verify); "" = system CAs."""
    verify = environment.verify
    return str(verify) if isinstance(verify, Path) else ""


def report_prefix(reports: Path, env: str, profile: str, now: datetime) -> Path:
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return reports / f"{env}-{profile}-{stamp}"


def locust_command(
    *,
    host: str,
    users: int,
    spawn_rate: float,
    run_time: str,
    prefix: Path,
    locustfile: Path = LOCUSTFILE,
    python: str = sys.executable,
) -> list[str]:
    """The headless locust run; its exit code is ignored, evaluate() decides."""
    return [
        python,
        "-m",
        "locust",
        "--locustfile",
        str(locustfile),
        "--headless",
        "--only-summary",
        "--host",
        host,
        "--users",
        str(users),
        "--spawn-rate",
        f"{spawn_rate:g}",
        "--run-time",
        run_time,
        "--csv",
        str(prefix),
        "--html",
        f"{prefix}.html",
        "--exit-code-on-error",
        "0",
    ]


# ------------------------------------------------------------------------------ results


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


# ------------------------------------------------------------------------------ the run


@dataclass(frozen=True)
class Options:
    env_name: str
    profile: str
    reports: Path = DEFAULT_REPORTS
    run_time: str = ""  # overrides the profile's
    slo_file: Path = SLO_FILE
    profiles_file: Path = PROFILES_FILE
    host: str = ""  # overrides the environment's URL


@dataclass(frozen=True)
class Outcome:
    verdicts: list[Verdict]
    breaches: list[str]
    prefix: Path

    @property
    def ok(self) -> bool:
        return not self.breaches


def run(options: Options, environ: Mapping[str, str] | None = None) -> Outcome:
    """Check, plan, run locust, evaluate; prints as it goes."""
    environ = dict(os.environ if environ is None else environ)
    environment = config.load(options.env_name)
    profile = load_profile(options.profile, options.profiles_file)
    slos = load_slos(options.slo_file)
    run_time = options.run_time or profile.run_time
    try:
        run_time_seconds(run_time)
    except ValueError:
        raise OpsError(f"--run-time {run_time!r} is not a run time: write e.g. 15s, 5m") from None

    api_key = environ.get(API_KEY_VAR, "")
    users = enabled_users(api_key)
    if environment.connect_to and not options.host:
        raise OpsError(
            f"{environment.source}: connect_to is set ({environment.connect_to}): "
            f"{environment.https_url} does not resolve from here, and locust connects by name. "
            "Fix: make the name resolve to that address on this machine (e.g. /etc/hosts), "
            "then pass --host=" + environment.https_url
        )
    host = (options.host or environment.https_url).rstrip("/")
    ca = ca_file(environment) if host.startswith("https://") else ""
    if ca and not Path(ca).is_file():
        raise OpsError(
            f"CA file {ca} for {environment.name} does not exist. Fix: start the stack first "
            f"(`invoke up --env {environment.name}` creates a local CA), or set ca_file in "
            f"{environment.source}"
        )
    over = check_rate_limits(profile, environment, users)

    print(f"load test: profile {profile.name} against {environment.name} ({host})")
    if profile.description:
        print(f"  {profile.description}")
    counts = allocation(profile.users, users)
    print(
        f"  {profile.users} users ({', '.join(f'{n} {c}' for n, c in counts.items())} at most), "
        f"spawn rate {profile.spawn_rate:g}/s, run time {run_time}"
    )
    limits = zone_limits(environment)
    budget = ", ".join(
        f"{zone} {rate:.1f} req/s (limit {limits[zone][0]})"
        for zone, rate in sorted(zone_rates(profile.users, users).items())
    )
    print(f"  worst case from this one client: {budget}")
    if host.startswith("https://"):
        print(f"  TLS verified with {ca or 'the system CAs'}")
    print(f"  SLOs: {slos.path} version {slos.version}")
    if not api_key:
        print(
            f"  note: {API_KEY_VAR} is not set: the Ingester is disabled, "
            f"{INGEST} and {INGEST_STATUS} are not exercised"
        )
    for line in over:
        print(f"  warning: {line}: expect HTTP 429s (see loadtests/README.md)")

    reports = options.reports if options.reports.is_absolute() else Path.cwd() / options.reports
    prefix = report_prefix(reports, environment.name, profile.name, datetime.now(UTC))
    prefix.parent.mkdir(parents=True, exist_ok=True)
    argv = locust_command(
        host=host,
        users=profile.users,
        spawn_rate=profile.spawn_rate,
        run_time=run_time,
        prefix=prefix,
    )
    env = {**environ, CA_VAR: ca}
    proc.echo(argv)
    sys.stdout.flush()
    timeout = run_time_seconds(run_time) + 120
    try:
        result = subprocess.run(  # noqa: S603  # nosec B603: argv list, no shell
            argv, env=env, cwd=paths.REPO_ROOT, check=False, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise OpsError(f"locust did not finish within {timeout}s of starting") from exc
    stats_path = Path(f"{prefix}_stats.csv")
    if result.returncode != 0 or not stats_path.is_file():
        raise OpsError(
            f"locust exited {result.returncode} without a stats report ({stats_path}); "
            "its output above says why"
        )
    stats = parse_stats(stats_path, Path(f"{prefix}_failures.csv"))
    verdicts, breaches = evaluate(stats, slos, expected_endpoints(users))
    print()
    for line in table(verdicts):
        print(line)
    print(f"reports: {prefix}.html, {prefix}_stats.csv, {prefix}_failures.csv")
    if breaches:
        print(f"SLO BREACHED ({len(breaches)}), {slos.path.name} version {slos.version}:")
        for breach in breaches:
            print(f"  - {breach}")
    else:
        print(f"all SLOs met ({slos.path.name} version {slos.version})")
    return Outcome(verdicts, breaches, prefix)


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m ops.perf.loadtest",
        description="Run the locust load test headless against an environment, judge it "
        "against the SLOs; exit 1 naming every breach.",
    )
    parser.add_argument("--env", required=True, help="environment name: environments/<env>.yaml")
    parser.add_argument("--profile", required=True, help=f"a profile of {PROFILES_FILE.name}")
    parser.add_argument(
        "--reports",
        type=Path,
        default=DEFAULT_REPORTS,
        help=f"directory for the CSV and HTML reports (default {DEFAULT_REPORTS})",
    )
    parser.add_argument("--run-time", default="", help="override the profile's run time (15s)")
    parser.add_argument("--slo", type=Path, default=SLO_FILE, help=f"SLO file (default {SLO_FILE})")
    parser.add_argument(
        "--profiles",
        type=Path,
        default=PROFILES_FILE,
        help=f"profiles file (default {PROFILES_FILE})",
    )
    parser.add_argument(
        "--host", default="", help="base URL to load instead of the environment's HTTPS URL"
    )
    args = parser.parse_args(list(argv))
    return Options(
        env_name=args.env,
        profile=args.profile,
        reports=args.reports,
        run_time=args.run_time,
        slo_file=args.slo,
        profiles_file=args.profiles,
        host=args.host,
    )


def main(argv: Sequence[str]) -> int:
    options = parse_args(argv)
    try:
        outcome = run(options)
    except OpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return 0 if outcome.ok else EXIT_BREACH


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""The gate itself: check the profile against the environment's limits, run locust headless
against the environment's HTTPS URL, judge the reports, exit 1 naming every breach (2 when the
run could not be made)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ops import config, paths, proc
from ops.errors import OpsError
from ops.perf.loadtest.files import (
    LOCUSTFILE,
    PROFILES_FILE,
    SLO_FILE,
    Profile,
    SloSet,
    load_profile,
    load_slos,
    run_time_seconds,
)
from ops.perf.loadtest.results import Verdict, evaluate, parse_stats, table
from ops.perf.loadtest.users import (
    API_KEY_VAR,
    CA_VAR,
    INGEST,
    INGEST_STATUS,
    ZONE_API,
    ZONE_VIEWER,
    UserModel,
    allocation,
    enabled_users,
    expected_endpoints,
    zone_rates,
)

DEFAULT_REPORTS = Path("reports") / "loadtest"

EXIT_BREACH = 1
EXIT_ERROR = 2
# Seconds locust may take past its run time (start-up, the last requests, the reports) before
# it is stopped.
LOCUST_GRACE_S = 120


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


@dataclass(frozen=True)
class Plan:
    """A run checked and ready: what to load, from where, judged by which SLOs."""

    environment: config.Environment
    profile: Profile
    slos: SloSet
    run_time: str
    api_key: str
    users: list[UserModel]
    host: str
    ca: str  # CA file locust verifies HTTPS with; "" = the system CAs
    over: list[str]  # zones the profile may push past nginx's limits (warned about)


def run(options: Options, environ: Mapping[str, str] | None = None) -> Outcome:
    """Check, plan, run locust, evaluate; prints as it goes."""
    environ = dict(os.environ if environ is None else environ)
    plan = prepare(options, environ)
    print_plan(plan)
    prefix = run_locust(plan, options.reports, environ)
    return judge(plan, prefix)


def prepare(options: Options, environ: Mapping[str, str]) -> Plan:
    """Load the environment, the profile and the SLOs; refuse a run that cannot be judged."""
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
    return Plan(environment, profile, slos, run_time, api_key, users, host, ca, over)


def print_plan(plan: Plan) -> None:
    """What is about to run: the load, its worst case per nginx zone, TLS, the SLOs."""
    profile, environment, users = plan.profile, plan.environment, plan.users
    print(f"load test: profile {profile.name} against {environment.name} ({plan.host})")
    if profile.description:
        print(f"  {profile.description}")
    counts = allocation(profile.users, users)
    print(
        f"  {profile.users} users ({', '.join(f'{n} {c}' for n, c in counts.items())} at most), "
        f"spawn rate {profile.spawn_rate:g}/s, run time {plan.run_time}"
    )
    limits = zone_limits(environment)
    budget = ", ".join(
        f"{zone} {rate:.1f} req/s (limit {limits[zone][0]})"
        for zone, rate in sorted(zone_rates(profile.users, users).items())
    )
    print(f"  worst case from this one client: {budget}")
    if plan.host.startswith("https://"):
        print(f"  TLS verified with {plan.ca or 'the system CAs'}")
    print(f"  SLOs: {plan.slos.path} version {plan.slos.version}")
    if not plan.api_key:
        print(
            f"  note: {API_KEY_VAR} is not set: the Ingester is disabled, "
            f"{INGEST} and {INGEST_STATUS} are not exercised"
        )
    for line in plan.over:
        print(f"  warning: {line}: expect HTTP 429s (see loadtests/README.md)")


def run_locust(plan: Plan, reports: Path, environ: Mapping[str, str]) -> Path:
    """Run locust headless (its output goes through); the prefix of the reports it wrote."""
    reports = reports if reports.is_absolute() else Path.cwd() / reports
    prefix = report_prefix(reports, plan.environment.name, plan.profile.name, datetime.now(UTC))
    prefix.parent.mkdir(parents=True, exist_ok=True)
    argv = locust_command(
        host=plan.host,
        users=plan.profile.users,
        spawn_rate=plan.profile.spawn_rate,
        run_time=plan.run_time,
        prefix=prefix,
    )
    result = proc.run(
        argv,
        env={**environ, CA_VAR: plan.ca},
        cwd=paths.REPO_ROOT,
        check=False,
        what="locust",
        timeout=run_time_seconds(plan.run_time) + LOCUST_GRACE_S,
    )
    stats_path = Path(f"{prefix}_stats.csv")
    if result.returncode != 0 or not stats_path.is_file():
        raise OpsError(
            f"locust exited {result.returncode} without a stats report ({stats_path}); "
            "its output above says why"
        )
    return prefix


def judge(plan: Plan, prefix: Path) -> Outcome:
    """The reports against the SLOs: the table, then every breach by name."""
    stats = parse_stats(Path(f"{prefix}_stats.csv"), Path(f"{prefix}_failures.csv"))
    verdicts, breaches = evaluate(stats, plan.slos, expected_endpoints(plan.users))
    slos = plan.slos
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

"""The load-test gate: profile and SLO files, the locust command, CSV parsing, the verdicts.

Two real locust runs (a few seconds each, side by side) go against a tiny HTTP server in this
process that answers like the service: one healthy, one whose viewer answers 429 like nginx's
rate limiter. Their CSV reports feed the parsing tests; their exit codes are the gate's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ops import config, paths, proc
from ops.errors import OpsError
from ops.perf import loadtest
from ops.perf.loadtest import EndpointStats, Slo, SloSet

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
LOCAL = ROOT / "environments" / "local.yaml"

# ------------------------------------------------------------------------------ helpers


def _environment(**nginx: int) -> config.Environment:
    data = {"name": "lt", "target": "local", "nginx": nginx}
    return config.parse(data, Path("/envs/lt.yaml"), "lt")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


PROFILE = """\
version: 1
profiles:
  quick:
    users: 3
    spawn_rate: 3
    run_time: 10s
    within_rate_limits: true
"""

SLOS = """\
version: 3
default: {max_error_percent: 1, p95_ms: 500, p99_ms: 1000}
endpoints:
  GET /api/v1/listings/{id}: {p95_ms: 200, p99_ms: 400}
  POST /api/v1/ingest: {max_error_percent: 5}
"""


def _slos(tmp_path: Path) -> SloSet:
    return loadtest.load_slos(_write(tmp_path, "slo.yaml", SLOS))


# ------------------------------------------------------------------------------ profiles


def test_the_shipped_profiles_are_smoke_baseline_and_stress() -> None:
    profiles = loadtest.load_profiles()
    assert list(profiles) == ["smoke", "baseline", "stress"]
    assert profiles["stress"].users > profiles["baseline"].users > profiles["smoke"].users
    assert loadtest.run_time_seconds(profiles["smoke"].run_time) <= 30


@pytest.mark.parametrize("key", ["", "test-key"])
def test_smoke_and_baseline_stay_within_the_local_rate_limits_with_or_without_ingester(
    key: str,
) -> None:
    local = config.load("local") if LOCAL.is_file() else _environment()
    users = loadtest.enabled_users(key)
    for name in ("smoke", "baseline"):
        assert loadtest.check_rate_limits(loadtest.load_profile(name), local, users) == []


def test_stress_exceeds_one_clients_limits_and_is_allowed_to_with_a_warning() -> None:
    over = loadtest.check_rate_limits(
        loadtest.load_profile("stress"), _environment(), loadtest.enabled_users("k")
    )
    assert any(line.startswith("/api: up to") and "nginx.rate_limit: 50" in line for line in over)
    assert any("nginx.viewer_rate_limit: 10" in line for line in over)


def test_a_profile_that_claims_to_stay_within_limits_but_cannot_is_refused_naming_the_fix() -> None:
    profile = loadtest.Profile(
        "big", users=60, spawn_rate=5, run_time="1m", within_rate_limits=True
    )
    with pytest.raises(OpsError) as caught:
        loadtest.check_rate_limits(profile, _environment(), loadtest.enabled_users(""))
    message = str(caught.value)
    assert "profile 'big' (60 users)" in message
    assert "/api: up to 60.0 req/s from one client, above nginx.rate_limit: 50" in message
    assert "Fix: lower users in profiles.yaml, or raise the limits in /envs/lt.yaml" in message


def test_raised_limits_in_the_environment_let_the_same_profile_run() -> None:
    profile = loadtest.Profile(
        "big", users=60, spawn_rate=5, run_time="1m", within_rate_limits=True
    )
    roomy = _environment(rate_limit=500, viewer_rate_limit=100)
    assert loadtest.check_rate_limits(profile, roomy, loadtest.enabled_users("")) == []


def test_users_are_split_by_weight_with_one_ingester_when_a_key_is_set() -> None:
    assert loadtest.allocation(24, loadtest.enabled_users("k")) == {
        "Searcher": 16,
        "Viewer": 8,
        "Ingester": 1,
    }
    assert loadtest.allocation(6, loadtest.enabled_users("")) == {"Searcher": 4, "Viewer": 2}
    assert loadtest.zone_rates(24, loadtest.enabled_users("k")) == {
        "/api": 24.5,
        "viewer /": 8.0,
    }


@pytest.mark.parametrize(
    ("text", "field", "fix"),
    [
        ("profiles: {}\n", "field 'version' is missing", "add 'version:'"),
        ("version: 1\nprofiles: {}\n", "field 'profiles' is empty", "define at least one"),
        (
            PROFILE.replace("users: 3", "users: 1"),
            "field 'profiles.quick.users' is 1, fewer than one user per user class",
            "set users: 3 or more",
        ),
        (
            PROFILE.replace("run_time: 10s", "run_time: soon"),
            "field 'profiles.quick.run_time' is 'soon', not a run time",
            "like 30s, 5m, 1h30m",
        ),
        (
            PROFILE.replace("spawn_rate: 3", "spawn_rate: 0"),
            "field 'profiles.quick.spawn_rate' must be a number above 0",
            "write a number above 0",
        ),
        (
            PROFILE.replace("within_rate_limits: true", "within_rate_limits: maybe"),
            "field 'profiles.quick.within_rate_limits' must be true or false",
            "per-client limits",
        ),
        (
            PROFILE + "    ramp: fast\n",
            "field 'profiles.quick.ramp' is unknown",
            "remove it or use one of: description, run_time",
        ),
        (
            PROFILE.replace("    users: 3\n", ""),
            "field 'profiles.quick.users' is missing",
            "add 'users:'",
        ),
        ("version: 1\nprofiles: [smoke]\n", "field 'profiles' must be a mapping", "key: value"),
        ("version: [1\n", "not valid YAML", ""),
    ],
)
def test_profile_errors_name_the_file_the_field_and_the_fix(
    tmp_path: Path, text: str, field: str, fix: str
) -> None:
    path = _write(tmp_path, "profiles.yaml", text)
    with pytest.raises(OpsError) as caught:
        loadtest.load_profiles(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert field in message
    assert fix in message


def test_an_unknown_profile_is_refused_listing_the_ones_there_are(tmp_path: Path) -> None:
    path = _write(tmp_path, "profiles.yaml", PROFILE)
    with pytest.raises(
        OpsError, match=r"no profile 'soak'\. Fix: use --profile with one of: quick"
    ):
        loadtest.load_profile("soak", path)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("90", 90), ("2m5s", 125)]
)
def test_run_times_are_read_the_way_locust_reads_them(text: str, seconds: int) -> None:
    assert loadtest.run_time_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "5 minutes", "1d", "-5"])
def test_nonsense_run_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        loadtest.run_time_seconds(text)


# ------------------------------------------------------------------------------ SLOs


def test_the_shipped_slos_cover_every_endpoint_the_users_exercise() -> None:
    slos = loadtest.load_slos()
    expected = loadtest.expected_endpoints(loadtest.enabled_users("k"))
    assert set(slos.endpoints) == set(expected)
    assert slos.for_endpoint(loadtest.SEARCH) == Slo(1.0, 500.0, 1000.0)
    assert slos.default.max_error_percent == 1.0


def test_an_endpoint_entry_inherits_what_it_leaves_out_from_the_default(tmp_path: Path) -> None:
    slos = _slos(tmp_path)
    assert slos.version == 3
    assert slos.for_endpoint(loadtest.DETAIL) == Slo(1.0, 200.0, 400.0)
    assert slos.for_endpoint(loadtest.INGEST) == Slo(5.0, 500.0, 1000.0)
    assert slos.for_endpoint("GET /somewhere/else") == slos.default


@pytest.mark.parametrize(
    ("text", "field", "fix"),
    [
        (
            SLOS.replace("p99_ms: 400", "p99_ms: 100"),
            "field 'endpoints.GET /api/v1/listings/{id}.p99_ms' is 100, below p95_ms 200",
            "make p99_ms >= p95_ms",
        ),
        (
            SLOS.replace("GET /api/v1/listings/{id}", "listings detail"),
            "field 'endpoints.listings detail' is not an endpoint name",
            "e.g. 'GET /api/v1/listings/{id}'",
        ),
        (
            SLOS.replace("p95_ms: 500", "p95_ms: fast"),
            "field 'default.p95_ms' must be a number above 0, got 'fast'",
            "write a number above 0",
        ),
        (
            SLOS.replace("max_error_percent: 1,", "max_error_percent: 150,"),
            "field 'default.max_error_percent' is 150, above 100",
            "a percentage between 0 and 100",
        ),
        (
            SLOS.replace("max_error_percent: 1, ", ""),
            "field 'default.max_error_percent' is missing",
            "add 'max_error_percent:'",
        ),
        (
            SLOS.replace("{max_error_percent: 5}", "{p90_ms: 5}"),
            "field 'endpoints.POST /api/v1/ingest.p90_ms' is unknown",
            "max_error_percent, p95_ms, p99_ms",
        ),
        (SLOS.replace("version: 3", "version: 0"), "field 'version' must be an integer >= 1", ""),
    ],
)
def test_slo_errors_name_the_file_the_field_and_the_fix(
    tmp_path: Path, text: str, field: str, fix: str
) -> None:
    path = _write(tmp_path, "slo.yaml", text)
    with pytest.raises(OpsError) as caught:
        loadtest.load_slos(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert field in message
    assert fix in message


def test_a_zero_error_budget_is_allowed(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "slo.yaml", SLOS.replace("max_error_percent: 1,", "max_error_percent: 0,")
    )
    assert loadtest.load_slos(path).default.max_error_percent == 0.0


# ------------------------------------------------------------------------------ command line


def test_the_locust_command_is_headless_with_reports_and_leaves_the_verdict_to_us() -> None:
    prefix = Path("/r/local-smoke-20260102T030405Z")
    argv = loadtest.locust_command(
        host="https://localhost:8443",
        users=6,
        spawn_rate=6.0,
        run_time="30s",
        prefix=prefix,
        python="python3",
    )
    assert argv == [
        "python3",
        "-m",
        "locust",
        "--locustfile",
        str(ROOT / "loadtests" / "locustfile.py"),
        "--headless",
        "--only-summary",
        "--host",
        "https://localhost:8443",
        "--users",
        "6",
        "--spawn-rate",
        "6",
        "--run-time",
        "30s",
        "--csv",
        "/r/local-smoke-20260102T030405Z",
        "--html",
        "/r/local-smoke-20260102T030405Z.html",
        "--exit-code-on-error",
        "0",
    ]


def test_reports_are_named_after_env_profile_and_utc_time() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert loadtest.report_prefix(Path("reports/loadtest"), "local", "smoke", now) == Path(
        "reports/loadtest/local-smoke-20260102T030405Z"
    )


def test_a_local_ca_environment_is_verified_with_its_own_ca(envdir: Path, tmp_path: Path) -> None:
    (envdir / "lt.yaml").write_text("name: lt\ntarget: local\n", encoding="utf-8")
    environment = config.load("lt")
    assert loadtest.ca_file(environment) == str(tmp_path / ".slipway" / "lt" / "ca.crt")


def test_an_environment_with_a_ca_file_or_public_certificates_is_verified_accordingly() -> None:
    environment = _environment()
    given = dataclasses.replace(environment, ca_file=Path("/etc/slipway/sandbox-ca.crt"))
    assert loadtest.ca_file(given) == "/etc/slipway/sandbox-ca.crt"
    assert loadtest.ca_file(dataclasses.replace(environment, tls="acme")) == ""


def test_arguments_default_to_the_shipped_files_and_the_reports_directory() -> None:
    options = loadtest.parse_args(["--env=local", "--profile=smoke"])
    assert options == loadtest.Options(env_name="local", profile="smoke")
    assert options.reports == Path("reports/loadtest")
    assert options.slo_file == ROOT / "loadtests" / "slo.yaml"


# ------------------------------------------------------------------------------ evaluation


def _stats(name: str, requests: int = 100, failures: int = 0, p95: float = 50, p99: float = 80,
           limited: int = 0) -> EndpointStats:  # fmt: skip
    return EndpointStats(name, requests, failures, p95, p99, limited)


def _all_good() -> list[EndpointStats]:
    names = loadtest.expected_endpoints(loadtest.enabled_users("k"))
    return [*(_stats(name) for name in names), _stats(loadtest.AGGREGATED, 500)]


def _replace(rows: list[EndpointStats], new: EndpointStats) -> list[EndpointStats]:
    return [new if row.name == new.name else row for row in rows]


def _expected() -> list[str]:
    return loadtest.expected_endpoints(loadtest.enabled_users("k"))


def test_everything_within_its_slo_passes(tmp_path: Path) -> None:
    verdicts, breaches = loadtest.evaluate(_all_good(), _slos(tmp_path), _expected())
    assert breaches == []
    assert [v.stats.name for v in verdicts] == [*_expected(), "Aggregated"]
    assert all(v.ok for v in verdicts)


def test_a_slow_p95_is_a_breach_named_with_both_numbers(tmp_path: Path) -> None:
    rows = _replace(_all_good(), _stats(loadtest.SEARCH, p95=812, p99=900))
    _, breaches = loadtest.evaluate(rows, _slos(tmp_path), _expected())
    assert breaches == ["GET /api/v1/listings p95 812 ms > 500 ms"]


def test_a_slow_p99_is_a_breach_against_the_endpoints_own_threshold(tmp_path: Path) -> None:
    rows = _replace(_all_good(), _stats(loadtest.DETAIL, p95=150, p99=450))
    _, breaches = loadtest.evaluate(rows, _slos(tmp_path), _expected())
    assert breaches == ["GET /api/v1/listings/{id} p99 450 ms > 400 ms"]


def test_an_error_rate_above_budget_is_a_breach(tmp_path: Path) -> None:
    rows = _replace(_all_good(), _stats(loadtest.VIEWER, requests=200, failures=3))
    _, breaches = loadtest.evaluate(rows, _slos(tmp_path), _expected())
    assert breaches == ["GET / errors 1.50% > 1% (3 of 200 failed)"]


def test_an_error_rate_within_an_endpoints_larger_budget_passes(tmp_path: Path) -> None:
    rows = _replace(_all_good(), _stats(loadtest.INGEST, requests=40, failures=2))
    _, breaches = loadtest.evaluate(rows, _slos(tmp_path), _expected())
    assert breaches == []


def test_a_breach_caused_by_rate_limiting_says_so_with_the_429_count(tmp_path: Path) -> None:
    rows = _replace(_all_good(), _stats(loadtest.SEARCH, requests=100, failures=30, limited=28))
    _, breaches = loadtest.evaluate(rows, _slos(tmp_path), _expected())
    assert len(breaches) == 1
    assert breaches[0].startswith("GET /api/v1/listings errors 30.00% > 1% (30 of 100 failed, ")
    assert "28 of them HTTP 429: rate limited by nginx, not a service error" in breaches[0]


def test_an_endpoint_the_users_exercise_that_got_no_requests_is_a_breach(tmp_path: Path) -> None:
    rows = [row for row in _all_good() if row.name != loadtest.INGEST_STATUS]
    verdicts, breaches = loadtest.evaluate(rows, _slos(tmp_path), _expected())
    assert breaches == ["GET /api/v1/ingest/{id} got no requests (the profile's users exercise it)"]
    assert [v.ok for v in verdicts if v.stats.name == loadtest.INGEST_STATUS] == [False]


def test_a_run_that_sent_nothing_fails(tmp_path: Path) -> None:
    verdicts, breaches = loadtest.evaluate([], _slos(tmp_path), [loadtest.SEARCH])
    assert breaches == [
        "GET /api/v1/listings got no requests (the profile's users exercise it)",
        "no requests were sent at all: nothing was load-tested",
    ]
    assert not any(v.ok for v in verdicts)


def test_the_aggregated_row_is_held_to_the_default(tmp_path: Path) -> None:
    rows = _replace(_all_good(), _stats(loadtest.AGGREGATED, 500, p95=600, p99=700))
    _, breaches = loadtest.evaluate(rows, _slos(tmp_path), _expected())
    assert breaches == ["Aggregated p95 600 ms > 500 ms"]


def test_the_table_has_one_line_per_endpoint_with_its_verdict(tmp_path: Path) -> None:
    rows = _replace(_all_good(), _stats(loadtest.SEARCH, p95=812, p99=900, failures=1, limited=1))
    verdicts, _ = loadtest.evaluate(rows, _slos(tmp_path), _expected())
    lines = loadtest.table(verdicts)
    assert lines[0].split() == [
        "endpoint", "requests", "errors", "%", "429s", "p95", "ms", "p99", "ms", "verdict",
    ]  # fmt: skip
    assert lines[1].split() == [
        "GET",
        "/api/v1/listings",
        "100",
        "1.00",
        "1",
        "812",
        "900",
        "BREACH",
    ]
    assert lines[-1].split() == ["Aggregated", "500", "0.00", "0", "50", "80", "PASS"]


# ------------------------------------------------------------------------------ real runs


@dataclass
class FakeService:
    """Answers the locustfile's requests the way the service does (shapes, statuses)."""

    viewer_status: int = 200
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, auth
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def _send(self, status: int, body: str, kind: str = "application/json") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> str:
                path = self.path.split("?")[0]
                auth = self.headers.get("Authorization", "")
                fake.seen.append((self.command, path, auth))
                return path

            def do_GET(self) -> None:
                path = self._record()
                if path == "/api/v1/listings":
                    cursor = None if "cursor=" in self.path else "Y3Vyc29y"
                    items = [{"id": n, "title": f"listing {n}"} for n in range(100, 110)]
                    self._send(200, json.dumps({"items": items, "next_cursor": cursor}))
                elif re.fullmatch(r"/api/v1/listings/\d+", path):
                    self._send(200, json.dumps({"id": int(path.rsplit("/", 1)[1])}))
                elif path.startswith("/api/v1/ingest/"):
                    self._send(200, json.dumps({"status": "done"}))
                elif path == "/" and fake.viewer_status == 429:
                    self._send(429, "<h1>429 Too Many Requests</h1>", "text/html")
                elif path == "/":
                    links = "".join(f'<a href="/api/v1/listings/{n}">x</a>' for n in (7, 8, 9))
                    nxt = '<a rel="next" href="/?city=Lyon&amp;cursor=Y3Vyc29y">next</a>'
                    self._send(200, f"<ol>{links}</ol>{nxt}", "text/html")
                else:
                    self._send(404, "{}")

            def do_POST(self) -> None:
                self._record()
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self._send(202, json.dumps({"job_id": str(uuid.uuid4()), "status": "queued"}))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class Run:
    result: subprocess.CompletedProcess[str]
    reports: Path
    service: FakeService

    @property
    def prefix(self) -> Path:
        (stats,) = self.reports.glob("*_stats.csv")
        return Path(str(stats).removesuffix("_stats.csv"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """`python -m ops.perf.loadtest` twice at once: healthy with a key; rate-limited without."""
    base = tmp_path_factory.mktemp("loadtest")
    envs = base / "environments"
    envs.mkdir()
    (envs / "lt.yaml").write_text("name: lt\ntarget: local\n", encoding="utf-8")
    # Every user spawned at once; 5 s give each class time for its second request.
    profiles = base / "profiles.yaml"
    profiles.write_text(
        PROFILE.replace("spawn_rate: 3", "spawn_rate: 100").replace("10s", "5s"), encoding="utf-8"
    )
    services = {"healthy": FakeService(), "limited": FakeService(viewer_status=429)}
    environ = {k: v for k, v in os.environ.items() if k != loadtest.API_KEY_VAR}
    environ["SLIPWAY_ENVIRONMENTS_DIR"] = str(envs)
    keys = {"healthy": "unit-test-key", "limited": ""}
    procs = {}
    try:
        for name, service in services.items():
            service.start()
            env = {**environ, loadtest.API_KEY_VAR: keys[name]} if keys[name] else environ
            argv = [
                sys.executable, "-m", "ops.perf.loadtest", "--env=lt", "--profile=quick",
                f"--profiles={profiles}", f"--host={service.url}", f"--reports={base / name}",
            ]  # fmt: skip
            procs[name] = subprocess.Popen(
                argv, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        results = {}
        for name, running in procs.items():
            out, err = running.communicate(timeout=120)
            completed = subprocess.CompletedProcess(running.args, running.returncode, out, err)
            results[name] = Run(completed, base / name, services[name])
        yield results
    finally:
        for running in procs.values():
            if running.poll() is None:
                running.kill()
        for service in services.values():
            service.stop()


def _explain(run: Run) -> str:
    return f"exit {run.result.returncode}\n{run.result.stdout}\n{run.result.stderr[-3000:]}"


def test_a_healthy_run_passes_with_exit_0_and_writes_csv_and_html(runs: dict[str, Run]) -> None:
    run = runs["healthy"]
    assert run.result.returncode == 0, _explain(run)
    assert "all SLOs met (slo.yaml version 1)" in run.result.stdout
    assert re.fullmatch(r"lt-quick-\d{8}T\d{6}Z", run.prefix.name)
    for suffix in (".html", "_stats.csv", "_failures.csv"):
        assert Path(f"{run.prefix}{suffix}").is_file(), suffix


def test_real_stats_parse_into_one_row_per_route_template(runs: dict[str, Run]) -> None:
    run = runs["healthy"]
    prefix = run.prefix
    stats = loadtest.parse_stats(Path(f"{prefix}_stats.csv"), Path(f"{prefix}_failures.csv"))
    by_name = {s.name: s for s in stats}
    assert set(by_name) == {*_expected(), "Aggregated"}, _explain(run)
    assert stats[-1].name == "Aggregated"
    for row in stats:
        assert row.requests > 0, row
        assert row.failures == 0, row
        assert row.p95_ms is not None and row.p99_ms is not None
        assert row.p99_ms >= row.p95_ms
    assert by_name["Aggregated"].requests == sum(s.requests for s in stats[:-1])
    # The CSV counts what the service saw (one search may be cut off in flight at the end).
    seen = [p for m, p, _ in run.service.seen if (m, p) == ("GET", "/api/v1/listings")]
    assert len(seen) - 1 <= by_name[loadtest.SEARCH].requests <= len(seen)


def test_the_ingester_sends_its_key_and_a_csv_feed(runs: dict[str, Run]) -> None:
    seen = runs["healthy"].service.seen
    ingest = [auth for method, path, auth in seen if path.startswith("/api/v1/ingest")]
    assert ingest, seen
    assert set(ingest) == {"Bearer unit-test-key"}
    others = {auth for _, path, auth in seen if not path.startswith("/api/v1/ingest")}
    assert others == {""}, "only the ingester sends a key"


def test_a_rate_limited_run_fails_naming_the_429s(runs: dict[str, Run]) -> None:
    run = runs["limited"]
    assert run.result.returncode == loadtest.EXIT_BREACH, _explain(run)
    out = run.result.stdout
    assert "SLO BREACHED" in out
    assert re.search(
        r"- GET / errors 100\.00% > 1% \((\d+) of \1 failed, \1 of them HTTP 429: rate limited "
        r"by nginx",
        out,
    ), out
    failures = loadtest.parse_failures(Path(f"{run.prefix}_failures.csv"))
    assert set(failures) == {"GET /"}
    assert failures["GET /"] > 0


def test_without_an_api_key_the_ingester_is_disabled_and_not_a_failure(
    runs: dict[str, Run],
) -> None:
    run = runs["limited"]
    assert (
        "note: SLIPWAY_LOADTEST_API_KEY is not set: the Ingester is disabled" in run.result.stdout
    )
    assert "the Ingester user is disabled" in run.result.stderr
    assert not [path for _, path, _ in run.service.seen if path.startswith("/api/v1/ingest")]
    assert "/api/v1/ingest" not in run.result.stdout.split("SLO BREACHED")[1]


def test_a_configuration_error_exits_2_naming_it(
    envdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert loadtest.main(["--env=nowhere", "--profile=smoke"]) == loadtest.EXIT_ERROR
    assert "error: unknown environment 'nowhere'" in capsys.readouterr().err


def test_a_missing_ca_file_is_refused_before_locust_starts(
    envdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (envdir / "lt.yaml").write_text("name: lt\ntarget: local\n", encoding="utf-8")
    assert loadtest.main(["--env=lt", "--profile=smoke"]) == loadtest.EXIT_ERROR
    err = capsys.readouterr().err
    assert "ca.crt for lt does not exist. Fix: start the stack first (`invoke up --env lt`" in err


def test_an_environment_reached_through_connect_to_is_refused_naming_the_fix(
    envdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (envdir / "lt.yaml").write_text(
        "name: lt\ntarget: ssh\nlistings_env: staging\nhosts: [{ssh: deploy@127.0.0.1:2222}]\n"
        "domains: [app.lt.test]\npublic_url: https://app.lt.test\n"
        "connect_to: 127.0.0.1:32771\n",
        encoding="utf-8",
    )
    assert loadtest.main(["--env=lt", "--profile=smoke"]) == loadtest.EXIT_ERROR
    err = capsys.readouterr().err
    assert "connect_to is set (127.0.0.1:32771)" in err
    assert "then pass --host=https://app.lt.test" in err


# ------------------------------------------------------------------------------ locust, faked


class FakeLocust:
    """Stands in for proc.run: records the call; writes a stats report unless told not to."""

    def __init__(self, code: int = 0, report: bool = True) -> None:
        self.code, self.report = code, report
        self.calls: list[tuple[list[str], dict[str, object]]] = []

    def __call__(self, argv: list[str], **options: object) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(argv), options))
        prefix = argv[argv.index("--csv") + 1]
        if self.report:
            Path(f"{prefix}_stats.csv").write_text(
                "Type,Name,Request Count,Failure Count,95%,99%\n,Aggregated,0,0,N/A,N/A\n",
                encoding="utf-8",
            )
        return subprocess.CompletedProcess(argv, self.code)


def _gate_options(envdir: Path, tmp_path: Path) -> loadtest.Options:
    (envdir / "lt.yaml").write_text("name: lt\ntarget: local\n", encoding="utf-8")
    return loadtest.Options(
        env_name="lt",
        profile="quick",
        profiles_file=_write(tmp_path, "profiles.yaml", PROFILE),
        reports=tmp_path / "reports",
        host="http://127.0.0.1:9",
    )


def test_locust_runs_echoed_from_the_repository_stopped_after_its_run_time_and_grace(
    envdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeLocust()
    monkeypatch.setattr(proc, "run", fake)
    outcome = loadtest.run(_gate_options(envdir, tmp_path), environ={"PATH": "/bin"})
    ((argv, options),) = fake.calls
    assert argv[1:3] == ["-m", "locust"]
    assert options == {
        "env": {"PATH": "/bin", loadtest.CA_VAR: ""},
        "cwd": paths.REPO_ROOT,
        "check": False,
        "what": "locust",
        "timeout": 10 + 120,
    }
    assert outcome.prefix.parent == tmp_path / "reports"
    assert "no requests were sent at all: nothing was load-tested" in outcome.breaches


@pytest.mark.parametrize(("code", "report"), [(1, True), (0, False)])
def test_locust_that_failed_or_wrote_no_report_is_an_error(
    envdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, report: bool
) -> None:
    monkeypatch.setattr(proc, "run", FakeLocust(code, report))
    with pytest.raises(OpsError, match=rf"^locust exited {code} without a stats report \("):
        loadtest.run(_gate_options(envdir, tmp_path), environ={})

"""The exporters image for real: each exporter runs as compose runs it (nobody, read-only root,
/tmp on tmpfs, no capabilities) against the real thing, on a Docker network of the test's own
where our PostgreSQL, Redis and nginx images answer to their compose names (postgres, redis,
nginx).

The metric names the alert rules (monitoring/prometheus/rules/) use are asserted here on the
live exporters, so a renamed metric fails a test instead of silencing an alert.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from e2e.built import built_image
from support.docker import docker, inspect, logs, output, remove
from support.tls import make_ca, make_cert
from support.waiting import wait_for

pytestmark = pytest.mark.integration

TAG = secrets.token_hex(3)
LABEL = "slipway.test=exporters"
HARDENING = (
    "--read-only",
    "--tmpfs",
    "/tmp:size=16m",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges:true",
)
# Characters a URL would need escaped: the exporter must still log in.
PASSWORD = f"p@ss/w:rd%?#&={secrets.token_hex(6)}"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$")
LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse(text: str) -> list[Sample]:
    samples = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match is None or line.startswith("#"):
            continue
        labels = dict(LABEL_PAIR.findall(match.group(2) or ""))
        samples.append(Sample(match.group(1), labels, float(match.group(3))))
    return samples


def find(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [
        s
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def one(samples: list[Sample], name: str, **labels: str) -> float:
    found = find(samples, name, **labels)
    assert len(found) == 1, f"{name}{labels}: {found or 'absent'}"
    return found[0].value


@dataclass
class Lab:
    """One Docker network and everything started on it (removed at teardown)."""

    exporters: str
    network: str
    containers: list[str] = field(default_factory=list)

    def run(
        self,
        name: str,
        image: str,
        *args: str,
        alias: str = "",
        env: dict[str, str] | None = None,
        options: tuple[str, ...] = (),
    ) -> str:
        container = f"slipway-it-exp-{TAG}-{name}"
        argv = ["run", "-d", "--name", container, "--label", LABEL, "--network", self.network]
        if alias:
            argv += ["--network-alias", alias]
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        docker(*argv, *options, image, *args)
        self.containers.append(container)
        return container

    def exporter(
        self,
        name: str,
        *args: str,
        env: dict[str, str] | None = None,
        options: tuple[str, ...] = (),
    ) -> str:
        """The exporters image, started with `args` (which exporter, and its flags)."""
        return self.run(name, self.exporters, *args, env=env, options=options)

    def cleanup(self) -> None:
        remove(*self.containers)
        docker("network", "rm", self.network, check=False)


def fetch(container: str, url: str) -> subprocess.CompletedProcess[str]:
    """GET from inside a container (curl is in all our images)."""
    return docker("exec", container, "curl", "-fsS", "--max-time", "10", url, check=False)


def wait_running(container: str, what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    """Until check() holds; the test fails at once if the container stops meanwhile."""

    def done() -> bool:
        if check():
            return True
        state = inspect(container, "{{.State.Status}}")
        assert state in {"created", "running"}, f"{container} is {state}:\n{logs(container)}"
        return False

    wait_for(done, what=what, timeout=timeout, details=lambda: logs(container))


def scrape(container: str, port: int, timeout: float = 60) -> list[Sample]:
    """The exporter's /metrics, once it answers."""
    url = f"http://127.0.0.1:{port}/metrics"
    wait_running(container, f"{url} in {container}", lambda: fetch(container, url).returncode == 0)
    return parse(fetch(container, url).stdout)


def scrape_until(
    container: str, port: int, what: str, check: Callable[[list[Sample]], bool]
) -> list[Sample]:
    found: list[list[Sample]] = []

    def attempt() -> bool:
        samples = scrape(container, port)
        found[:] = [samples]
        return check(samples)

    wait_running(container, what, attempt)
    return found[0]


def healthcheck(container: str) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, run now instead of waiting for its interval."""
    return docker("exec", container, "slipway-exporter", "healthcheck", check=False)


def assert_secret_nowhere(container: str, secret: str) -> None:
    """Neither the log, nor the container's command line, nor any process's arguments."""
    assert secret not in logs(container)
    assert secret not in inspect(container, "{{json .Args}} {{json .Config.Cmd}}")
    cmdlines = output("exec", container, "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    assert "prometheus-" in cmdlines
    assert secret not in cmdlines


@pytest.fixture(scope="module")
def exporters_image() -> str:
    return built_image("node-exporter", "SLIPWAY_EXPORTERS_TAG", name="exporters")


@pytest.fixture(scope="module")
def lab(exporters_image: str) -> Iterator[Lab]:
    network = f"slipway-it-exp-{TAG}"
    docker("network", "create", "--label", LABEL, network)
    handle = Lab(exporters=exporters_image, network=network)
    try:
        yield handle
    finally:
        handle.cleanup()


# ---------------------------------------------------------------------------- the entrypoint


def test_an_unknown_exporter_exits_2_with_the_usage(exporters_image: str) -> None:
    result = docker("run", "--rm", *HARDENING, exporters_image, "prometheus", check=False)
    assert result.returncode == 2
    assert "Usage: slipway-exporter <node|postgres|redis|nginx|blackbox>" in result.stderr
    assert "unknown exporter 'prometheus'" in result.stderr

    # Without a command: the usage on stdout, success.
    result = docker("run", "--rm", *HARDENING, exporters_image)
    assert result.stdout.startswith("Usage: slipway-exporter")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["node"], {}, "/host/proc/meminfo is missing"),
        (["postgres"], {}, "POSTGRES_PASSWORD is not set"),
        (["redis"], {}, "REDIS_PASSWORD is not set"),
        (["redis"], {"REDIS_PASSWORD": "x", "REDIS_STREAMS": "a;b"}, "REDIS_STREAMS must be"),
        (["blackbox"], {"PROBE_DOMAINS": " "}, "PROBE_DOMAINS is empty"),
        (["blackbox"], {"PROBE_DOMAINS": "ok.test bad_name"}, "'bad_name' is not a host name"),
        (["blackbox"], {"PROBE_DOMAINS": "a-b.test a.b-test"}, "two names give the module"),
        (
            ["blackbox"],
            {"PROBE_DOMAINS": "a.test", "PROBE_CA_FILE": "/nowhere/ca.crt"},
            "PROBE_CA_FILE=/nowhere/ca.crt is not a readable PEM certificate",
        ),
    ],
    ids=[
        "node without the host mounts",
        "postgres without password",
        "redis without password",
        "redis with a bad stream list",
        "blackbox without domains",
        "blackbox with a bad domain",
        "blackbox with two domains for one module",
        "blackbox with a missing CA file",
    ],
)
def test_invalid_settings_exit_2_naming_the_setting(
    exporters_image: str, args: list[str], env: dict[str, str], message: str
) -> None:
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    result = docker("run", "--rm", *HARDENING, *env_args, exporters_image, *args, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr


# ---------------------------------------------------------------------------- node


def test_node_exporter_reads_the_hosts_filesystems_and_memory(lab: Lab) -> None:
    mounts = ("-v", "/proc:/host/proc:ro", "-v", "/sys:/host/sys:ro", "-v", "/:/host/root:ro")
    container = lab.exporter("node", "node", options=(*HARDENING, *mounts))
    samples = scrape(container, 9100)

    root = find(samples, "node_filesystem_avail_bytes", mountpoint="/")
    assert root and root[0].value > 0, "the host's / (the /host/root mount, under its own name)"
    assert find(samples, "node_filesystem_size_bytes", mountpoint="/")
    assert find(samples, "node_filesystem_readonly", mountpoint="/")
    assert one(samples, "node_memory_MemAvailable_bytes") > 0
    assert one(samples, "node_memory_MemTotal_bytes") > one(
        samples, "node_memory_MemAvailable_bytes"
    )
    collectors = {s.labels["collector"] for s in find(samples, "node_scrape_collector_success")}
    assert {"filesystem", "meminfo", "cpu", "diskstats", "loadavg"} <= collectors
    assert not collectors & {"systemd", "rapl"}, "the collectors we turn off"
    # textfile reads the image's (empty) metrics directory: the backups' files when mounted.
    for name in ("filesystem", "meminfo", "cpu", "loadavg", "textfile"):
        assert one(samples, "node_scrape_collector_success", collector=name) == 1
    # No collector fails its scrape (a host without udev data says so once at start: harmless).
    assert "collector failed" not in logs(container)
    assert healthcheck(container).returncode == 0
    assert output("exec", container, "id", "-u") == "65534"


# ---------------------------------------------------------------------------- postgres


@pytest.fixture(scope="module")
def postgres(lab: Lab) -> str:
    image = built_image("postgres", "SLIPWAY_POSTGRES_TAG")
    env = {
        "POSTGRES_USER": "listings",
        "POSTGRES_DB": "listings",
        "POSTGRES_PASSWORD": PASSWORD,
        "PGBACKREST_REPO1_CIPHER_PASS": "exporter-test-passphrase-0123456789",
    }
    # As compose runs it: the backup repository and the shared socket directory on volumes
    # (anonymous ones here, owned by the postgres user like the image's directories; removed
    # with the container).
    container = lab.run(
        "postgres",
        image,
        alias="postgres",
        env=env,
        options=(
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--tmpfs",
            "/run",
            "-v",
            "/run/postgresql",
            "-v",
            "/var/lib/pgbackrest",
            "--shm-size",
            "256m",
        ),
    )

    def ready() -> bool:
        check = ["pg_isready", "-q", "-h", "/tmp", "-U", "postgres", "-d", "listings"]
        return docker("exec", container, *check, check=False).returncode == 0

    wait_running(container, "PostgreSQL ready", ready, timeout=90)
    return container


def test_postgres_exporter_reports_what_the_rules_use_and_pg_up_0_when_postgres_stops(
    lab: Lab, postgres: str
) -> None:
    container = lab.exporter(
        "postgres-exporter", "postgres", env={"POSTGRES_PASSWORD": PASSWORD}, options=HARDENING
    )
    samples = scrape_until(
        container, 9187, "pg_up 1", lambda s: find(s, "pg_up") == [Sample("pg_up", {}, 1.0)]
    )

    # Every series rules/postgres.yml reads, with the labels it uses.
    assert one(samples, "pg_settings_max_connections") == 200  # services/postgres' setting
    assert one(samples, "pg_stat_database_numbackends", datname="listings") >= 1
    assert find(samples, "pg_stat_activity_max_tx_duration", datname="listings", state="active")
    assert find(samples, "pg_stat_activity_count", datname="listings", state="idle in transaction")
    assert one(samples, "pg_stat_database_deadlocks", datname="listings") == 0
    assert one(samples, "pg_stat_archiver_failed_count") == 0
    assert one(samples, "pg_stat_archiver_archived_count") == 0
    assert find(samples, "pg_stat_archiver_last_archive_age"), "NaN until something is archived"
    assert find(samples, "pg_settings_archive_timeout_seconds")
    assert healthcheck(container).returncode == 0

    # A transaction of the application role shows in max_tx_duration (what
    # PostgresLongTransaction watches).
    session = "BEGIN; SELECT txid_current(); SELECT pg_sleep(12); COMMIT;"
    psql = ["psql", "-h", "127.0.0.1", "-U", "listings", "-d", "listings", "-c", session]
    docker("exec", "-d", "-e", f"PGPASSWORD={PASSWORD}", postgres, *psql)
    scrape_until(
        container,
        9187,
        "a transaction of listings open for over 2 s",
        lambda s: any(
            x.value >= 2 for x in find(s, "pg_stat_activity_max_tx_duration", datname="listings")
        ),
    )
    assert_secret_nowhere(container, PASSWORD)

    docker("stop", postgres)
    try:
        scrape_until(
            container, 9187, "pg_up 0", lambda s: find(s, "pg_up") == [Sample("pg_up", {}, 0.0)]
        )
        assert healthcheck(container).returncode == 0, "the exporter itself stays healthy"
    finally:
        docker("start", postgres)


# ---------------------------------------------------------------------------- redis


def test_redis_exporter_reports_memory_and_the_streams_groups_and_pending_messages(
    lab: Lab,
) -> None:
    image = built_image("redis", "SLIPWAY_REDIS_TAG")
    redis = lab.run(
        "redis",
        image,
        alias="redis",
        env={"REDIS_PASSWORD": PASSWORD},
        options=("--read-only", "--tmpfs", "/tmp", "--tmpfs", "/run"),
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = ["exec", "-e", f"REDISCLI_AUTH={PASSWORD}", redis, "redis-cli", "--no-auth-warning"]
        return docker(*argv, *args, check=False)

    wait_running(redis, "Redis answers", lambda: cli("PING").stdout.strip() == "PONG")
    # Three jobs queued; the workers' group has read one, not acknowledged yet.
    for job in ("1", "2", "3"):
        assert cli("XADD", "listings:ingest", "*", "job", job).returncode == 0
    group = "listings:ingest-workers"
    assert cli("XGROUP", "CREATE", "listings:ingest", group, "0").stdout.strip() == "OK"
    read = cli(
        "XREADGROUP", "GROUP", group, "worker-1", "COUNT", "1", "STREAMS", "listings:ingest", ">"
    )
    assert read.returncode == 0 and "job" in read.stdout, read.stdout + read.stderr
    assert cli("XADD", "listings:ingest:dead", "*", "job", "0").returncode == 0

    container = lab.exporter(
        "redis-exporter",
        "redis",
        env={"REDIS_PASSWORD": PASSWORD, "REDIS_STREAMS": "listings:ingest listings:ingest:dead"},
        options=HARDENING,
    )
    samples = scrape_until(container, 9121, "redis_up 1", lambda s: one(s, "redis_up") == 1)

    assert one(samples, "redis_memory_used_bytes") > 0
    assert one(samples, "redis_memory_max_bytes") == 256 * 1024 * 1024  # the image's default
    stream = {"db": "db0", "stream": "listings:ingest"}
    assert one(samples, "redis_stream_length", **stream) == 3
    assert one(samples, "redis_stream_groups", **stream) == 1
    assert one(samples, "redis_stream_group_consumers", **stream, group=group) == 1
    assert one(samples, "redis_stream_group_messages_pending", **stream, group=group) == 1
    assert (
        one(
            samples,
            "redis_stream_group_consumer_messages_pending",
            **stream,
            group=group,
            consumer="worker-1",
        )
        == 1
    )
    assert find(samples, "redis_stream_group_consumer_idle_seconds", **stream, group=group)
    assert find(samples, "redis_stream_last_generated_id", **stream)
    assert find(samples, "redis_stream_group_last_delivered_id", **stream, group=group)
    assert one(samples, "redis_stream_length", db="db0", stream="listings:ingest:dead") == 1
    assert healthcheck(container).returncode == 0
    assert_secret_nowhere(container, PASSWORD)

    docker("stop", redis)
    scrape_until(container, 9121, "redis_up 0", lambda s: one(s, "redis_up") == 0)
    assert healthcheck(container).returncode == 0, "the exporter itself stays healthy"


# ---------------------------------------------------------------------------- nginx


@dataclass(frozen=True)
class TLSFiles:
    directory: Path
    not_after: dt.datetime


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A test CA and a certificate it signed for shop.test: ca.crt, tls.crt, tls.key in a
    directory every container user can read (nginx runs as uid 101, the exporters as nobody)."""
    directory = tmp_path_factory.mktemp("exporters-tls")
    ca = make_ca("Slipway exporters test CA", days=30)
    site = make_cert("shop.test", signed_by=ca, days=10, server_auth=True)
    (directory / "ca.crt").write_bytes(ca.cert_pem)
    site.write(directory)
    directory.chmod(0o755)
    for path in directory.iterdir():
        path.chmod(0o644)
    return TLSFiles(directory=directory, not_after=site.not_after)


def start_nginx(lab: Lab, tls: TLSFiles, name: str) -> str:
    """Our nginx image as compose runs it, serving shop.test's certificate; the API behind it
    is absent (only /nginx-health and stub_status are used here)."""
    image = built_image("nginx", "SLIPWAY_NGINX_TAG")
    env = {"NGINX_SERVER_NAME": "shop.test", "NGINX_UPSTREAM": "127.0.0.1:9"}
    options = (
        "--read-only",
        "--tmpfs",
        "/tmp:size=64m",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges:true",
        "-v",
        f"{tls.directory}:/etc/nginx/tls:ro",
    )
    container = lab.run(name, image, alias="nginx", env=env, options=options)
    health = "http://127.0.0.1:8080/nginx-health"
    wait_running(container, "nginx answers", lambda: fetch(container, health).returncode == 0)
    return container


def test_nginx_exporter_waits_for_nginx_then_reports_it_and_nginx_up_0_when_it_stops(
    lab: Lab, tls_files: TLSFiles
) -> None:
    # Started first, as compose may: this exporter gives up when stub_status does not answer,
    # so the entrypoint makes it retry instead of exiting.
    container = lab.exporter("nginx-exporter", "nginx", options=HARDENING)
    wait_running(
        container,
        "the exporter retrying stub_status",
        lambda: "retrying" in logs(container).lower(),
    )
    assert inspect(container, "{{.State.Status}}") == "running", logs(container)
    assert healthcheck(container).returncode != 0, "not healthy while nginx is absent"

    nginx = start_nginx(lab, tls_files, "nginx-for-exporter")
    samples = scrape_until(
        container, 9113, "nginx_up 1", lambda s: find(s, "nginx_up") == [Sample("nginx_up", {}, 1)]
    )
    assert one(samples, "nginx_connections_accepted") >= 1
    assert one(samples, "nginx_connections_active") >= 1
    assert one(samples, "nginx_http_requests_total") >= 1
    assert healthcheck(container).returncode == 0

    remove(nginx)
    scrape_until(
        container, 9113, "nginx_up 0", lambda s: find(s, "nginx_up") == [Sample("nginx_up", {}, 0)]
    )


# ---------------------------------------------------------------------------- blackbox


def probe(container: str, module: str, target: str) -> list[Sample]:
    query = urllib.parse.urlencode({"module": module, "target": target})
    result = fetch(container, f"http://127.0.0.1:9115/probe?{query}")
    assert result.returncode == 0, result.stderr
    return parse(result.stdout)


def test_blackbox_renders_a_module_per_domain_and_probes_https_with_the_domains_name(
    lab: Lab, tls_files: TLSFiles
) -> None:
    start_nginx(lab, tls_files, "nginx-for-blackbox")
    mount = ("-v", f"{tls_files.directory}:/etc/slipway/probe:ro")
    env = {
        "PROBE_DOMAINS": "shop.test  other-site.test",
        "PROBE_CA_FILE": "/etc/slipway/probe/ca.crt",
    }
    container = lab.exporter("blackbox", "blackbox", env=env, options=(*HARDENING, *mount))
    scrape(container, 9115)
    assert healthcheck(container).returncode == 0

    # The configuration it loaded: one module per domain, as docs/architecture.md says.
    config = fetch(container, "http://127.0.0.1:9115/config").stdout
    for module, domain in (
        ("https_shop_test", "shop.test"),
        ("https_other_site_test", "other-site.test"),
    ):
        assert f"{module}:" in config
        assert f"server_name: {domain}" in config
        assert f"Host: {domain}" in config
    assert config.count("prober: http") == 2
    assert config.count("fail_if_not_ssl: true") == 2
    assert config.count("preferred_ip_protocol: ip4") == 2
    assert config.count("ca_file: /tmp/blackbox/ca.pem") == 2
    assert config.count("timeout: 5s") == 2

    target = "https://nginx:8443/nginx-health"
    good = probe(container, "https_shop_test", target)
    assert one(good, "probe_success") == 1, good
    assert one(good, "probe_http_status_code") == 200
    assert one(good, "probe_http_ssl") == 1
    expiry = one(good, "probe_ssl_earliest_cert_expiry")
    assert expiry == tls_files.not_after.timestamp()

    # nginx serves shop.test's certificate to every name: the other domain's check fails.
    wrong = probe(container, "https_other_site_test", target)
    assert one(wrong, "probe_success") == 0
    assert not find(wrong, "probe_ssl_earliest_cert_expiry")

    # Without PROBE_CA_FILE only the system CAs are trusted: the test CA is not one of them.
    untrusting = lab.exporter(
        "blackbox-system-cas", "blackbox", env={"PROBE_DOMAINS": "shop.test"}, options=HARDENING
    )
    scrape(untrusting, 9115)
    assert one(probe(untrusting, "https_shop_test", target), "probe_success") == 0
    assert "ca_file" not in fetch(untrusting, "http://127.0.0.1:9115/config").stdout

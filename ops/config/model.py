"""The typed values of an environment file: one frozen dataclass per section, `Environment` on top.

Pure: nothing here reads a file or validates a field (ops/config/loading.py does, with the
section readers). The properties derive what the rest of ops needs from the values (compose
variables, URLs, sizes in bytes).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from ops import certs, paths
from ops.errors import OpsError

TARGETS = ("local", "ssh")
TLS_MODES = ("local-ca", "acme")
# LISTINGS_ENV values the service accepts (its settings differ per mode, see docs/architecture.md).
LISTINGS_ENVS = ("local", "test", "staging", "production")
# nginx's size syntax (parse_size).
_SIZE_RE = re.compile(r"^([1-9][0-9]*)([kmg]?)$")
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
# Services whose containers get `resources:` limits (compose deploy.resources.limits).
RESOURCE_SERVICES = (
    "api",
    "worker",
    "postgres",
    "redis",
    "nginx",
    "certbot",
    "prometheus",
    "alertmanager",
    "logs",
)
MAX_RENEW_BEFORE_DAYS = 89
LETSENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
DEFAULT_REMOTE_ROOT = "/srv/slipway"


@dataclass(frozen=True)
class Ports:
    """Host ports nginx publishes."""

    http: int = 8080
    https: int = 8443


@dataclass(frozen=True)
class Replicas:
    """How many containers of each application service run."""

    api: int = 2
    worker: int = 1


@dataclass(frozen=True)
class Nginx:
    """Edge proxy knobs (rate limit per client IP on /api, largest accepted feed)."""

    rate_limit: int = 50
    rate_burst: int = 100
    max_feed_size: str = "64m"
    viewer_rate_limit: int = 10
    viewer_rate_burst: int = 20
    ready_rate_limit: int = 5
    ready_rate_burst: int = 10
    ingest_connections: int = 4

    @property
    def max_feed_bytes(self) -> int:
        """max_feed_size in bytes (nginx size syntax: 512k, 50m, 1g)."""
        return parse_size(self.max_feed_size)


@dataclass(frozen=True)
class Host:
    """One machine a `target: ssh` environment deploys to, reached with the ssh client."""

    user: str
    address: str  # DNS name or IP address (IPv6 without brackets)
    port: int = 22
    identity: Path | None = None  # private key (ssh -i); None: the ssh client's defaults
    known_hosts: Path = Path("known_hosts")  # UserKnownHostsFile; parse() makes it absolute
    swarm_address: str = ""  # where the other hosts reach this one (Swarm); "" = address

    @property
    def advertise(self) -> str:
        """The address Docker Swarm advertises for this host to the others."""
        return self.swarm_address or self.address

    @property
    def destination(self) -> str:
        """user@host, as the ssh client takes it (the port goes to -p)."""
        return f"{self.user}@{self.address}"

    @property
    def label(self) -> str:
        """user@host:port, for messages (IPv6 in brackets)."""
        return f"{self.user}@{url_host(self.address)}:{self.port}"

    @property
    def ssh_url(self) -> str:
        """ssh://user@host:port, e.g. for DOCKER_HOST (IPv6 in brackets)."""
        return f"ssh://{self.label}"


@dataclass(frozen=True)
class Acme:
    """ACME account for `tls: acme`: contact e-mail and the CA's directory URL."""

    email: str
    directory: str = LETSENCRYPT_DIRECTORY
    server_ca: Path | None = None  # absolute; verifies the directory's own HTTPS (private CAs)
    renew_before_days: int = 30

    @property
    def is_letsencrypt(self) -> bool:
        """True for Let's Encrypt (production or staging), which only issues for public names."""
        host = urlsplit(self.directory).hostname or ""
        return host == "letsencrypt.org" or host.endswith(".letsencrypt.org")


@dataclass(frozen=True)
class Registry:
    """`registry:`: the address this machine pushes images to and the one the hosts pull from.

    Each is host[:port][/namespace] (no scheme, no trailing '/'); `pull` equals `push` unless
    the file gives both (a sandbox: loopback here, the network address there)."""

    push: str
    pull: str


@dataclass(frozen=True)
class Limits:
    """Resource limits of one service's containers; None means no limit."""

    cpus: float | None = None
    memory: str | None = None  # size as written, lowercase: 512m, 1g

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else parse_size(self.memory)


@dataclass(frozen=True)
class Resources:
    """Per-service limits (compose `deploy.resources.limits`); default: no limits."""

    api: Limits = field(default_factory=Limits)
    worker: Limits = field(default_factory=Limits)
    postgres: Limits = field(default_factory=Limits)
    redis: Limits = field(default_factory=Limits)
    nginx: Limits = field(default_factory=Limits)
    certbot: Limits = field(default_factory=Limits)
    prometheus: Limits = field(default_factory=Limits)
    alertmanager: Limits = field(default_factory=Limits)
    logs: Limits = field(default_factory=Limits)

    def compose_env(self) -> dict[str, str]:
        """SLIPWAY_<SERVICE>_CPUS and SLIPWAY_<SERVICE>_MEMORY (bytes) for every service.

        "0" stands for "no limit": compose 2.40 accepts `cpus: "0"` and `memory: "0"` in
        deploy.resources.limits and drops both from the resolved model (`docker compose config`
        shows `limits: {}`), so the container runs unlimited. An empty value is refused by
        compose for both (invalid size, ParseFloat), and -1 is refused for memory, so "0" is
        the only unlimited value valid for both.
        """
        result: dict[str, str] = {}
        for service in RESOURCE_SERVICES:
            limits: Limits = getattr(self, service)
            prefix = f"SLIPWAY_{service.upper()}"
            result[f"{prefix}_CPUS"] = "0" if limits.cpus is None else f"{limits.cpus:g}"
            memory = limits.memory_bytes
            result[f"{prefix}_MEMORY"] = "0" if memory is None else str(memory)
        return result


@dataclass(frozen=True)
class Monitoring:
    """Prometheus, Alertmanager and the exporters (compose profile `monitoring`)."""

    enabled: bool = True
    retention: str = "30d"  # Prometheus duration: samples older than this are dropped
    retention_size: str = "10GB"  # and the oldest blocks go first above this size
    # Local targets only: published on 127.0.0.1 whatever `bind` says (never public).
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    # Central logs (compose/logging.yaml): days kept, and the bound on their disk use.
    log_retention_days: int = 30
    log_max_size: str = "2g"
    # Loopback UDP port of the host where Docker's syslog driver sends every container's lines.
    log_port: int = 5514


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
COMPRESS_TYPES = ("lz4", "zst", "gz", "none")
S3_URI_STYLES = ("host", "path")


@dataclass(frozen=True)
class S3Repository:
    """The off-site second repository (pgBackRest repo2) on S3-compatible object storage.
    Its access key and secret are secrets: BACKUP_S3_KEY and BACKUP_S3_KEY_SECRET."""

    endpoint: str  # host name of the S3 API (no scheme: always HTTPS)
    bucket: str
    region: str = "us-east-1"
    port: int = 443
    path: str = ""  # inside the bucket; empty: /slipway/<environment>
    uri_style: str = "host"  # host (AWS) or path (most self-hosted servers)
    ca_file: Path | None = None  # a private CA that verifies the endpoint; None: system CAs
    retention_days: int = 0  # 0: backup.retention_days

    def ca_b64(self) -> str:
        """The CA file as base64 PEM for the containers (empty: the system CAs)."""
        if self.ca_file is None:
            return ""
        try:
            return base64.b64encode(self.ca_file.read_bytes()).decode()
        except OSError as exc:
            raise OpsError(
                f"backup.s3.ca_file {self.ca_file} cannot be read ({exc.strerror}). Fix: point "
                "it at the PEM file of the CA that signs the endpoint's certificate"
            ) from exc


@dataclass(frozen=True)
class Backup:
    """pgBackRest backups (docs/disaster-recovery.md): schedule, retention, resources."""

    time: str = "02:00"  # daily backup, HH:MM UTC
    full_days: tuple[str, ...] = ("sun",)  # full on these days, differential the others
    retention_days: int = 30  # restorable window: full backups are kept to cover it
    check_every: int = 900  # seconds between `pgbackrest check` runs (WAL switch + archive)
    retry_every: int = 3600  # seconds between catch-up attempts after a missed/failed backup
    process_max: int = 2  # parallel processes for compression and transfer
    compress: str = "lz4"
    before_migrations: bool = True  # `invoke deploy` backs up before running migrations
    s3: S3Repository | None = None  # the off-site second repository (compose/backup-s3.yaml)

    def compose_env(self, env_name: str = "") -> dict[str, str]:
        """Variables of compose.yaml's x-pgbackrest and backup service (and backup-s3.yaml)."""
        s3 = {}
        if self.s3 is not None:
            s3 = {
                "SLIPWAY_BACKUP_S3_ENDPOINT": self.s3.endpoint,
                "SLIPWAY_BACKUP_S3_PORT": str(self.s3.port),
                "SLIPWAY_BACKUP_S3_BUCKET": self.s3.bucket,
                "SLIPWAY_BACKUP_S3_REGION": self.s3.region,
                "SLIPWAY_BACKUP_S3_PATH": self.s3.path or f"/slipway/{env_name}",
                "SLIPWAY_BACKUP_S3_URI_STYLE": self.s3.uri_style,
                "SLIPWAY_BACKUP_S3_RETENTION_DAYS": str(
                    self.s3.retention_days or self.retention_days
                ),
                "SLIPWAY_BACKUP_S3_CA_B64": self.s3.ca_b64(),
            }
        return {
            **s3,
            "SLIPWAY_BACKUP_TIME": self.time,
            "SLIPWAY_BACKUP_FULL_DAYS": ",".join(self.full_days),
            "SLIPWAY_BACKUP_RETENTION_DAYS": str(self.retention_days),
            "SLIPWAY_BACKUP_CHECK_INTERVAL": str(self.check_every),
            "SLIPWAY_BACKUP_RETRY_INTERVAL": str(self.retry_every),
            "SLIPWAY_BACKUP_PROCESS_MAX": str(self.process_max),
            "SLIPWAY_BACKUP_COMPRESS": self.compress,
        }


@dataclass(frozen=True)
class Deploy:
    """How a deploy to hosts proceeds (docs/architecture.md); `target: local` ignores it."""

    # API replicas started (and stopped) at a time; 0: all at once when the host has the memory
    # for them next to the running ones (one host), else one at a time (a swarm: one).
    batch: int = 0
    remote_dir: str = ""  # empty: /srv/slipway/<name>, filled in by Environment
    lock_wait: int = 300
    lock_ttl: int = 900
    health_timeout: int = 120
    min_free_disk: str = "2g"
    keep_releases: int = 5
    # Seconds the replicas a switch took the traffic from stay running, out of traffic, so a
    # rollback (or the automatic one) within them is a switch back; 0: stopped at once.
    standby: int = 300
    # GET requests every new release answers with 2xx within check_latency seconds, in its
    # replicas before the switch and through nginx after it (ops/deploy/checks.py).
    checks: tuple[str, ...] = (
        "/api/v1/listings?limit=5",
        "/api/v1/listings/{listing}",
        "/",
    )
    check_latency: int = 5
    # After the switch, the new release's share of 5xx answers to the clients' requests, from
    # Prometheus (with monitoring, one host): for `watch` seconds after the switch (0: no
    # watch), judged once `watch_min_requests` arrived; above `watch_error_percent`, the
    # automatic rollback (ops/deploy/watch.py).
    watch: int = 60
    watch_error_percent: int = 5
    watch_min_requests: int = 20

    @property
    def min_free_disk_bytes(self) -> int:
        return parse_size(self.min_free_disk)


@dataclass(frozen=True)
class Environment:
    """One deployment environment, as described by environments/<name>.yaml."""

    name: str
    source: Path
    target: str = "local"
    tls: str = "local-ca"
    domains: tuple[str, ...] = ("localhost",)
    bind: str = "127.0.0.1"
    ports: Ports = field(default_factory=Ports)
    replicas: Replicas = field(default_factory=Replicas)
    nginx: Nginx = field(default_factory=Nginx)
    project: str = ""
    overlay: str = ""
    listings_env: str = "local"
    hosts: tuple[Host, ...] = ()
    acme: Acme | None = None
    public_url: str = ""  # normalized: https://host[:port], port omitted when 443
    ca_file: Path | None = None  # absolute
    connect_to: str = ""  # host:port clients on this machine connect to for public_url
    registry: Registry | None = None  # None: `registry: none`, images go over SSH
    resources: Resources = field(default_factory=Resources)
    monitoring: Monitoring = field(default_factory=Monitoring)
    backup: Backup = field(default_factory=Backup)
    deploy: Deploy = field(default_factory=Deploy)

    def __post_init__(self) -> None:
        if not self.deploy.remote_dir:
            remote_dir = f"{DEFAULT_REMOTE_ROOT}/{self.name}"
            object.__setattr__(self, "deploy", replace(self.deploy, remote_dir=remote_dir))

    @property
    def project_name(self) -> str:
        """Compose project name: `project` if set, else slipway-<name>."""
        return self.project or f"slipway-{self.name}"

    @property
    def overlay_name(self) -> str:
        """Compose overlay used on top of compose/compose.yaml: `overlay` if set, else <name>."""
        return self.overlay or self.name

    @property
    def is_local(self) -> bool:
        """True when the stack runs on this machine's Docker engine."""
        return self.target == "local"

    @property
    def is_ssh(self) -> bool:
        """True when the stack is deployed to `hosts` over SSH."""
        return self.target == "ssh"

    @property
    def is_swarm(self) -> bool:
        """Several hosts: Docker Swarm (one host: Compose over SSH)."""
        return self.is_ssh and len(self.hosts) > 1

    @property
    def primary_domain(self) -> str:
        """The first domain: the one URLs are printed and checked with."""
        return self.domains[0]

    @property
    def public_host(self) -> str:
        """Host clients connect to for HTTPS: public_url's, else the primary domain."""
        if self.public_url:
            return urlsplit(self.public_url).hostname or self.primary_domain
        return self.primary_domain

    @property
    def public_port(self) -> int:
        """Port clients connect to for HTTPS: public_url's, else ports.https."""
        if self.public_url:
            return urlsplit(self.public_url).port or 443
        return self.ports.https

    @property
    def https_url(self) -> str:
        """Public HTTPS base URL: public_url, else from the primary domain and ports.https."""
        if self.public_url:
            return self.public_url
        return format_https_url(self.primary_domain, self.ports.https)

    @property
    def verify(self) -> Path | bool:
        """What verifies the certificate at https_url (httpx/ssl): a CA file, or True (system).

        ca_file when set; for tls: local-ca the environment's own CA (.slipway/<name>/ca.crt,
        written by ops.certs); otherwise the system's CAs.
        """
        if self.ca_file is not None:
            return self.ca_file
        if self.tls == "local-ca":
            return certs.CertPaths(paths.env_state_dir(self.name)).ca_crt
        return True

    @property
    def http_url(self) -> str:
        """Public HTTP base URL (redirects to HTTPS)."""
        port = "" if self.ports.http == 80 else f":{self.ports.http}"
        return f"http://{url_host(self.primary_domain)}{port}"


def url_host(host: str) -> str:
    """A host as it stands in a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def format_https_url(host: str, port: int) -> str:
    """https://host[:port], the port left out when it is 443."""
    suffix = "" if port == 443 else f":{port}"
    return f"https://{url_host(host)}{suffix}"


def parse_size(text: str) -> int:
    """Bytes in an nginx-style size ("512k", "50m", "1g", "1000")."""
    match = _SIZE_RE.match(text.strip().lower())
    if not match:
        raise ValueError(text)
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]

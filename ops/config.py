"""Environment files: environments/<name>.yaml loaded into typed, validated dataclasses.

Every error names the file, the field and the fix. `target: local` runs the stack on this
machine's engine; `target: ssh` deploys it to `hosts` (docs/architecture.md, "Deploys to hosts").
Sections a target does not use are either refused (`hosts` on local) or ignored (`deploy` on
local), never silently misread.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ops import certs, paths
from ops.errors import OpsError

TARGETS = ("local", "ssh")
TLS_MODES = ("local-ca", "acme")
# LISTINGS_ENV values the service accepts (its settings differ per mode, see docs/architecture.md).
LISTINGS_ENVS = ("local", "test", "staging", "production")

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
_SIZE_RE = re.compile(r"^([1-9][0-9]*)([kmg]?)$")
# Prometheus' --storage.tsdb.retention.time and .size (the units an operator would write).
_DURATION_RE = re.compile(r"^[1-9][0-9]*[hdwy]$")
_TSDB_SIZE_RE = re.compile(r"^[1-9][0-9]*(MB|GB|TB)$")
_MIN_LOG_SIZE = 64 * 1024 * 1024
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
# Default bind of a host: it serves the world on 80/443 (a workstation keeps to loopback).
_ALL_INTERFACES = "0.0.0.0"  # noqa: S104  # nosec B104
# Docker refuses smaller memory limits ("Minimum memory limit allowed is 6MB") and CPU limits
# below one hundredth of a CPU.
_MIN_MEMORY = 6 * 1024**2
_MIN_CPUS = 0.01
# Login names as useradd accepts them; never starting with '-', so never read as an ssh option.
_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
# user@host[:port], host possibly an IPv6 address in brackets.
_SSH_RE = re.compile(r"^(?:(?P<user>[^@]*)@)?(?P<host>\[[^\]]*\]|[^:@\[\]]*)(?::(?P<port>.*))?$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
# remote_dir goes into commands run by the remote shell: only characters that need no quoting.
_REMOTE_DIR_RE = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
_REGISTRY_PATH_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
# Top-level domains that never resolve publicly (RFC 2606, 6761, 6762; ICANN's .internal):
# Let's Encrypt cannot validate names under them.
_PRIVATE_TLDS = ("localhost", "test", "example", "invalid", "local", "internal")


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
        return f"{self.user}@{_url_host(self.address)}:{self.port}"

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
_TIME_OF_DAY_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


S3_URI_STYLES = ("host", "path")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


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

    batch: int = 1
    remote_dir: str = ""  # empty: /srv/slipway/<name>, filled in by Environment
    lock_wait: int = 300
    lock_ttl: int = 900
    health_timeout: int = 120
    min_free_disk: str = "2g"
    keep_releases: int = 5

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
        return _https_url(self.primary_domain, self.ports.https)

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
        return f"http://{_url_host(self.primary_domain)}{port}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _https_url(host: str, port: int) -> str:
    suffix = "" if port == 443 else f":{port}"
    return f"https://{_url_host(host)}{suffix}"


def parse_size(text: str) -> int:
    """Bytes in an nginx-style size ("512k", "50m", "1g", "1000")."""
    match = _SIZE_RE.match(text.strip().lower())
    if not match:
        raise ValueError(text)
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def available() -> list[str]:
    """Names of the environments that have a file in the environments directory."""
    directory = paths.environments_dir()
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load(name: str) -> Environment:
    """Load and validate environments/<name>.yaml."""
    directory = paths.environments_dir()
    if not _NAME_RE.match(name):
        raise OpsError(
            f"invalid environment name {name!r}: use lowercase letters, digits and '-' "
            f"(available in {directory}: {', '.join(available()) or 'none'})"
        )
    path = directory / f"{name}.yaml"
    if not path.is_file():
        names = ", ".join(available()) or "none"
        raise OpsError(
            f"unknown environment {name!r}: no file {path}. Available: {names}. "
            f"Fix: pick one of them with --env, or create {path} (see docs/environments.md)"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise OpsError(f"{path}: not valid YAML: {exc}") from exc
    return parse(data, path, name)


def parse(data: object, path: Path, name: str) -> Environment:
    """Validate the YAML document `data` read from `path` for environment `name`."""
    reader = _Reader(path)
    top = reader.mapping(data, "")
    reader.check_keys(
        top,
        "",
        required={"name", "target"},
        optional={
            "tls",
            "domains",
            "bind",
            "ports",
            "replicas",
            "nginx",
            "project",
            "overlay",
            "listings_env",
            "hosts",
            "acme",
            "public_url",
            "ca_file",
            "connect_to",
            "registry",
            "resources",
            "monitoring",
            "backup",
            "deploy",
        },
    )
    declared = reader.string(top, "name")
    if declared != name:
        reader.fail("name", f"is {declared!r} but the file is {name}.yaml", f"set name: {name}")
    target = reader.choice(top, "target", TARGETS)
    local = target == "local"
    tls = reader.choice(top, "tls", TLS_MODES, default="local-ca")
    domains = reader.domains(top, "domains")
    bind = reader.address(top, "bind", default="127.0.0.1" if local else _ALL_INTERFACES)
    project = reader.string(top, "project", default="")
    if project and not _PROJECT_RE.match(project):
        reader.fail(
            "project",
            f"{project!r} is not a valid compose project name",
            "use lowercase letters, digits, '-' and '_', starting with a letter or digit",
        )
    overlay = reader.string(top, "overlay", default="")
    if overlay and not _PROJECT_RE.match(overlay):
        reader.fail("overlay", f"{overlay!r} is not a file stem", "name a compose/<overlay>.yaml")

    listings_env = _listings_env(reader, top, name, target)

    ports_data = reader.section(top, "ports", {"http", "https"})
    default_ports = Ports() if local else Ports(http=80, https=443)
    ports = Ports(
        http=reader.port(ports_data, "ports.http", "http", default_ports.http),
        https=reader.port(ports_data, "ports.https", "https", default_ports.https),
    )
    if ports.http == ports.https:
        reader.fail("ports", f"http and https are both {ports.http}", "give them different ports")

    replicas_data = reader.section(top, "replicas", {"api", "worker"})
    replicas = Replicas(
        api=reader.integer(replicas_data, "replicas.api", "api", Replicas.api, minimum=1),
        worker=reader.integer(
            replicas_data, "replicas.worker", "worker", Replicas.worker, minimum=0
        ),
    )

    rates = ("rate_limit", "viewer_rate_limit", "ready_rate_limit", "ingest_connections")
    bursts = ("rate_burst", "viewer_rate_burst", "ready_rate_burst")
    nginx_data = reader.section(top, "nginx", {*rates, *bursts, "max_feed_size"})
    knobs: dict[str, int] = {}
    for key in (*rates, *bursts):
        default = getattr(Nginx, key)
        minimum = 0 if key in bursts else 1
        knobs[key] = reader.integer(nginx_data, f"nginx.{key}", key, default, minimum=minimum)
    nginx = Nginx(
        **knobs,
        max_feed_size=reader.size(
            nginx_data, "nginx.max_feed_size", "max_feed_size", Nginx.max_feed_size
        ),
    )
    ca_file = None
    if top.get("ca_file") is not None:
        ca_file = reader.local_path(reader.string(top, "ca_file"), "ca_file")
    return Environment(
        name=name,
        source=path,
        target=target,
        tls=tls,
        domains=domains,
        bind=bind,
        ports=ports,
        replicas=replicas,
        nginx=nginx,
        project=project,
        overlay=overlay,
        listings_env=listings_env,
        hosts=_hosts(reader, top, name, target),
        acme=_acme(reader, top, target, tls, domains),
        public_url=_public_url(reader, top, tls, domains),
        ca_file=ca_file,
        connect_to=_connect_to(reader, top),
        registry=_registry(reader, top),
        resources=_resources(reader, top),
        monitoring=_monitoring(reader, top, ports),
        backup=_backup(reader, top),
        deploy=_deploy(reader, top, name),
    )


def _listings_env(reader: _Reader, top: Mapping[str, Any], name: str, target: str) -> str:
    if "listings_env" in top or name in LISTINGS_ENVS:
        default = name if name in LISTINGS_ENVS else None
        return reader.choice(top, "listings_env", LISTINGS_ENVS, default=default)
    if target == "local":
        return "local"
    reader.fail(
        "listings_env",
        f"is missing: the name {name!r} is not a service mode ({', '.join(LISTINGS_ENVS)}), "
        f"and a target: {target} environment must say which one it runs",
        "add e.g. 'listings_env: staging' (a rehearsal of production) or "
        "'listings_env: production'",
    )
    raise AssertionError  # unreachable: fail() raises


def _hosts(reader: _Reader, top: Mapping[str, Any], name: str, target: str) -> tuple[Host, ...]:
    value = top.get("hosts")
    if target == "local":
        if value is not None:
            reader.fail(
                "hosts",
                "is set but target is local (the stack runs on this machine)",
                "remove hosts, or set target: ssh to deploy to them",
            )
        return ()
    example = "hosts: [{ssh: deploy@203.0.113.10}]"
    if not isinstance(value, list) or not value:
        reader.fail(
            "hosts",
            f"must be a non-empty list for target: {target}, got {_kind(value)}",
            f"list the machines to deploy to, e.g. {example}",
        )
        raise AssertionError  # unreachable: fail() raises
    hosts: list[Host] = []
    for index, item in enumerate(value):
        where = f"hosts[{index}]"
        data = reader.mapping(item, where)
        reader.check_keys(
            data, where, required={"ssh"}, optional={"identity", "known_hosts", "swarm_address"}
        )
        user, address, port = _ssh_destination(reader, data, f"{where}.ssh")
        identity = None
        if data.get("identity") is not None:
            text = reader.string(data, "identity", where=f"{where}.identity")
            identity = reader.local_path(text, f"{where}.identity")
        known_hosts = paths.env_state_dir(name) / "known_hosts"
        if data.get("known_hosts") is not None:
            text = reader.string(data, "known_hosts", where=f"{where}.known_hosts")
            known_hosts = reader.local_path(text, f"{where}.known_hosts")
        swarm_address = ""
        if data.get("swarm_address") is not None:
            swarm_address = reader.string(data, "swarm_address", where=f"{where}.swarm_address")
            swarm_address = swarm_address.strip()
            if not _is_ip(swarm_address):
                reader.fail(
                    f"{where}.swarm_address",
                    f"{swarm_address!r} is not an IP address (Docker Swarm advertises addresses, "
                    "not names)",
                    "write the address the other hosts reach this one at (private network), "
                    "e.g. 10.0.0.11",
                )
        host = Host(user, address, port, identity, known_hosts, swarm_address)
        for earlier in hosts:
            if (earlier.address, earlier.port) == (address, port):
                reader.fail(
                    f"{where}.ssh",
                    f"names {host.label}, already listed as {earlier.label}",
                    "list each host once",
                )
        hosts.append(host)
    if len(hosts) > 1:
        for index, host in enumerate(hosts):
            if not host.swarm_address and not _is_ip(host.address):
                reader.fail(
                    f"hosts[{index}].swarm_address",
                    f"is missing and hosts[{index}].ssh names {host.address!r}, not an IP address: "
                    "several hosts form a Docker Swarm, which advertises each host by address",
                    "add `swarm_address: <its IP on the network the hosts share>`, e.g. 10.0.0.11",
                )
    return tuple(hosts)


def _ssh_destination(reader: _Reader, data: Mapping[str, Any], where: str) -> tuple[str, str, int]:
    text = reader.string(data, "ssh", where=where).strip()
    expected = "user@host[:port], e.g. deploy@203.0.113.10:22 or deploy@[2001:db8::10]:22"
    match = _SSH_RE.match(text)
    if not match:
        reader.fail(where, f"{text!r} is not {expected}", f"write {expected}")
        raise AssertionError  # unreachable: fail() raises
    user, host, port_text = match.group("user"), match.group("host"), match.group("port")
    if not user:
        reader.fail(
            where, f"{text!r} names no login user", f"write {expected} (the user comes first)"
        )
    if not _USER_RE.match(user):
        reader.fail(
            where,
            f"user {user!r} is not a login name",
            "use letters, digits, '_', '.', '-', not starting with '-' or a digit",
        )
    if host.startswith("["):
        try:
            address = str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            reader.fail(where, f"{host} is not an IPv6 address", f"write {expected}")
            raise AssertionError from None  # unreachable: fail() raises
    elif port_text is not None and ":" in port_text:
        reader.fail(where, f"{text!r}: an IPv6 address needs brackets", f"write {expected}")
        raise AssertionError  # unreachable: fail() raises
    else:
        address = host.lower()
        numeric = bool(re.fullmatch(r"[0-9.]+", address))
        if not _HOSTNAME_RE.match(address) or (numeric and not _is_ip(address)):
            reader.fail(where, f"{host!r} is not a host name or IP address", f"write {expected}")
    port = 22
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            reader.fail(
                where,
                f"port {port_text!r} is not a port number between 1 and 65535",
                f"write {expected}",
            )
        port = int(port_text)
    return user, address, port


def _acme(
    reader: _Reader,
    top: Mapping[str, Any],
    target: str,
    tls: str,
    domains: tuple[str, ...],
) -> Acme | None:
    present = top.get("acme") is not None
    if tls != "acme":
        if present:
            reader.fail(
                "acme", f"is set but tls is {tls}", "set tls: acme, or remove the acme section"
            )
        return None
    if target != "ssh":
        reader.fail(
            "tls",
            f"is acme but target is {target}: an ACME CA must reach the host over the internet",
            "use tls: local-ca for target: local, or deploy with target: ssh",
        )
    if not present:
        reader.fail(
            "acme",
            "is missing (tls is acme)",
            "add e.g. 'acme: {email: ops@example.org}' (see docs/environments.md)",
        )
    data = reader.section(top, "acme", {"email", "directory", "server_ca", "renew_before_days"})
    email = reader.string(data, "email", where="acme.email").strip()
    if not _EMAIL_RE.match(email):
        reader.fail(
            "acme.email",
            f"{email!r} is not an e-mail address",
            "write the address the ACME CA may contact, e.g. ops@example.org",
        )
    directory = reader.string(
        data, "directory", default=LETSENCRYPT_DIRECTORY, where="acme.directory"
    )
    reader.https_url(directory, "acme.directory", allow_path=True)
    server_ca = None
    if data.get("server_ca") is not None:
        server_ca = reader.local_path(
            reader.string(data, "server_ca", where="acme.server_ca"), "acme.server_ca"
        )
    renew_before = reader.integer(
        data,
        "acme.renew_before_days",
        "renew_before_days",
        Acme.renew_before_days,
        minimum=1,
        maximum=MAX_RENEW_BEFORE_DAYS,
        expected=f"whole days from 1 to {MAX_RENEW_BEFORE_DAYS} (certificates last 90)",
    )
    acme = Acme(
        email=email,
        directory=directory.strip(),
        server_ca=server_ca,
        renew_before_days=renew_before,
    )
    if acme.is_letsencrypt:
        for index, domain in enumerate(domains):
            problem = _not_public(domain)
            if problem:
                reader.fail(
                    f"domains[{index}]",
                    f"{domain!r} {problem}; Let's Encrypt only issues certificates for public "
                    "DNS names",
                    "list the public names the hosts answer for, or use tls: local-ca",
                )
    return acme


def _connect_to(reader: _Reader, top: Mapping[str, Any]) -> str:
    if top.get("connect_to") is None:
        return ""
    text = reader.string(top, "connect_to").strip()
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    valid = bool(sep and host and port.isdigit() and 0 < int(port) < 65536)
    if valid and not _HOSTNAME_RE.match(host.lower()):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            valid = False
    if not valid:
        reader.fail(
            "connect_to",
            f"{text!r} is not host:port",
            "write the address and port clients on this machine reach public_url at, "
            "e.g. 127.0.0.1:8443 (the URL's name is still used for SNI and the certificate)",
        )
    return f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"


def _not_public(domain: str) -> str:
    """Why Let's Encrypt cannot validate `domain` ("" when it can try)."""
    try:
        ipaddress.ip_address(domain)
    except ValueError:
        pass
    else:
        return "is an IP address"
    if "." not in domain:
        return "has no dot"
    if domain.rsplit(".", 1)[1] in _PRIVATE_TLDS:
        return "is under a top-level domain that never resolves publicly"
    return ""


def _public_url(reader: _Reader, top: Mapping[str, Any], tls: str, domains: tuple[str, ...]) -> str:
    if top.get("public_url") is None:
        return ""
    text = reader.string(top, "public_url")
    host, port = reader.https_url(text, "public_url", allow_path=False)
    # nginx's certificate covers the domains (a local CA adds localhost and the loopback IPs):
    # any other host would fail verification on every check through public_url.
    covered = certs.wanted_names(domains) if tls == "local-ca" else list(domains)
    if host not in covered:
        reader.fail(
            "public_url",
            f"names host {host!r}, which the tls: {tls} certificate does not cover "
            f"({', '.join(covered)})",
            f"add {host} to domains, or use one of those names in public_url",
        )
    return _https_url(host, port)


_REGISTRY_SHAPE = "host[:port][/namespace], e.g. registry.example.org/slipway"


def _registry(reader: _Reader, top: Mapping[str, Any]) -> Registry | None:
    """`registry:` is none (the default), one address, or {push: ..., pull: ...}."""
    value = top.get("registry", "none")
    if isinstance(value, Mapping):
        data = reader.section(top, "registry", {"push", "pull"})
        if data.get("push") is None:
            reader.fail(
                "registry.push",
                "is missing",
                f"add 'push: {_REGISTRY_SHAPE}' (pull defaults to it), or write registry: none",
            )
        push = _registry_address(reader, data, "push", "registry.push")
        pull = push
        if data.get("pull") is not None:
            pull = _registry_address(reader, data, "pull", "registry.pull")
        return Registry(push=push, pull=pull)
    if not isinstance(value, str):
        reader.fail(
            "registry",
            f"must be none, an address or a mapping, got {_kind(value)} {value!r}",
            f"write none, {_REGISTRY_SHAPE}, or {{push: <address>, pull: <address>}}",
        )
    if value.strip() == "none":
        return None
    address = _registry_address(reader, top, "registry", "registry")
    return Registry(push=address, pull=address)


def _registry_address(reader: _Reader, data: Mapping[str, Any], key: str, where: str) -> str:
    """One registry address: host[:port][/namespace], as Docker reads an image name's prefix."""
    text = reader.string(data, key, where=where).strip().rstrip("/")
    host_port, _, namespace = text.partition("/")
    host, _, port = host_port.partition(":")
    problem = ""
    if text == "none":
        problem = "is none inside a registry mapping"
    elif "://" in text:
        problem = "has a scheme"
    elif not _HOSTNAME_RE.match(host.lower()) or (port and not _valid_port(port)):
        problem = f"has no valid host[:port] ({host_port!r})"
    elif "." not in host and not port and host != "localhost":
        # Docker reads a first component without '.', ':' or 'localhost' as a Docker Hub
        # namespace: the images would go to docker.io.
        problem = "does not look like a registry host to Docker"
    elif namespace and not all(_REGISTRY_PATH_RE.match(part) for part in namespace.split("/")):
        problem = f"has an invalid namespace {namespace!r}"
    if problem:
        fix = f"write {_REGISTRY_SHAPE} (docker.io/<user> for Docker Hub)"
        if where == "registry":
            fix = f"write none, or {_REGISTRY_SHAPE} (docker.io/<user> for Docker Hub)"
        reader.fail(where, f"{text!r} {problem}", fix)
    return text


def _valid_port(text: str) -> bool:
    return text.isdigit() and 1 <= int(text) <= 65535


def _resources(reader: _Reader, top: Mapping[str, Any]) -> Resources:
    data = reader.section(top, "resources", set(RESOURCE_SERVICES))
    result: dict[str, Limits] = {}
    for service in RESOURCE_SERVICES:
        where = f"resources.{service}"
        limits = reader.section(data, service, {"cpus", "memory"}, where=where)
        cpus = None
        if limits.get("cpus") is not None:
            cpus = reader.cpus(limits["cpus"], f"{where}.cpus")
        memory = None
        if limits.get("memory") is not None:
            memory = reader.size(limits, f"{where}.memory", "memory", "")
            if parse_size(memory) < _MIN_MEMORY:
                reader.fail(
                    f"{where}.memory",
                    f"is {memory}, below Docker's minimum of 6m",
                    "write at least 6m (e.g. 256m)",
                )
        result[service] = Limits(cpus=cpus, memory=memory)
    return Resources(**result)


def _backup(reader: _Reader, top: Mapping[str, Any]) -> Backup:
    keys = {
        "time",
        "full_days",
        "retention_days",
        "check_every",
        "retry_every",
        "process_max",
        "compress",
        "before_migrations",
        "s3",
    }
    data = reader.section(top, "backup", keys)
    raw_time = data.get("time", Backup.time)
    if isinstance(raw_time, int) and not isinstance(raw_time, bool) and 0 <= raw_time < 24 * 60:
        # YAML 1.1 reads an unquoted 12:30 as the sexagesimal integer 750 (12 * 60 + 30).
        raw_time = f"{raw_time // 60:02d}:{raw_time % 60:02d}"
    at = str(raw_time).strip()
    if not _TIME_OF_DAY_RE.match(at):
        reader.fail(
            "backup.time", f"is {at!r}, not a time of day", 'write HH:MM in UTC, e.g. "02:00"'
        )
    days = data.get("full_days", list(Backup.full_days))
    if isinstance(days, str):
        days = [d.strip() for d in days.split(",")]
    if not isinstance(days, list) or not days or any(_weekday(d) is None for d in days):
        reader.fail(
            "backup.full_days",
            f"is {days!r}, not a list of days",
            f"write e.g. [sun] or [wed, sun] (days: {', '.join(WEEKDAYS)})",
        )
    full_days = tuple(dict.fromkeys(str(_weekday(d)) for d in days))
    before = data.get("before_migrations", Backup.before_migrations)
    if not isinstance(before, bool):
        reader.fail(
            "backup.before_migrations",
            f"must be true or false, got {before!r}",
            "write true or false",
        )
    compress = str(data.get("compress", Backup.compress)).strip()
    if compress not in COMPRESS_TYPES:
        reader.fail(
            "backup.compress",
            f"is {compress!r}, not a pgBackRest compression",
            f"use one of: {', '.join(COMPRESS_TYPES)}",
        )
    return Backup(
        time=at,
        full_days=full_days,
        retention_days=reader.integer(
            data, "backup.retention_days", "retention_days", Backup.retention_days, minimum=1
        ),
        check_every=reader.integer(
            data, "backup.check_every", "check_every", Backup.check_every, minimum=60
        ),
        retry_every=reader.integer(
            data, "backup.retry_every", "retry_every", Backup.retry_every, minimum=60
        ),
        process_max=reader.integer(
            data, "backup.process_max", "process_max", Backup.process_max, minimum=1
        ),
        compress=compress,
        before_migrations=bool(before),
        s3=_backup_s3(reader, data),
    )


_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _weekday(value: object) -> str | None:
    """mon..sun for a day written short (sun) or long (Sunday); None for anything else."""
    text = str(value).strip().lower()
    if text in WEEKDAYS:
        return text
    if text in _DAY_NAMES:
        return WEEKDAYS[_DAY_NAMES.index(text)]
    return None


def _backup_s3(reader: _Reader, backup: Mapping[str, Any]) -> S3Repository | None:
    if backup.get("s3") is None:
        return None
    keys = {
        "endpoint",
        "bucket",
        "region",
        "port",
        "path",
        "uri_style",
        "ca_file",
        "retention_days",
    }
    data = reader.section(backup, "s3", keys, where="backup.s3")
    endpoint = str(data.get("endpoint", "")).strip()
    if "://" in endpoint or not _HOSTNAME_RE.match(endpoint):
        reader.fail(
            "backup.s3.endpoint",
            f"is {endpoint!r}, not a host name",
            "write the S3 API's host name without scheme or port, e.g. s3.eu-west-1.amazonaws.com "
            "(the port goes in backup.s3.port; it is always HTTPS)",
        )
    bucket = str(data.get("bucket", "")).strip()
    if not _BUCKET_RE.match(bucket):
        reader.fail(
            "backup.s3.bucket",
            f"is {bucket!r}, not a bucket name",
            "write the bucket's name: 3 to 63 lowercase letters, digits, '.' and '-'",
        )
    region = str(data.get("region", S3Repository.region)).strip()
    if not region:
        reader.fail("backup.s3.region", "is empty", 'write the region, e.g. "us-east-1"')
    path = str(data.get("path", "")).strip()
    if path and (not path.startswith("/") or path.endswith("/") or "//" in path):
        reader.fail(
            "backup.s3.path",
            f"is {path!r}",
            "write an absolute path inside the bucket without a trailing '/', e.g. /slipway/prod",
        )
    uri_style = str(data.get("uri_style", S3Repository.uri_style)).strip()
    if uri_style not in S3_URI_STYLES:
        reader.fail(
            "backup.s3.uri_style",
            f"is {uri_style!r}",
            "write host (bucket.endpoint, AWS) or path (endpoint/bucket, most self-hosted servers)",
        )
    ca_file = None
    if data.get("ca_file") is not None:
        ca_file = reader.local_path(str(data["ca_file"]), "backup.s3.ca_file")
        if not ca_file.is_file():
            reader.fail(
                "backup.s3.ca_file",
                f"{ca_file} does not exist",
                "point it at the PEM file of the CA that signs the endpoint's certificate",
            )
    return S3Repository(
        endpoint=endpoint,
        bucket=bucket,
        region=region,
        port=reader.port(data, "backup.s3.port", "port", S3Repository.port),
        path=path,
        uri_style=uri_style,
        ca_file=ca_file,
        retention_days=reader.integer(
            data, "backup.s3.retention_days", "retention_days", 0, minimum=0
        ),
    )


def _monitoring(reader: _Reader, top: Mapping[str, Any], ports: Ports) -> Monitoring:
    keys = {
        "enabled",
        "retention",
        "retention_size",
        "prometheus_port",
        "alertmanager_port",
        "log_retention_days",
        "log_max_size",
        "log_port",
    }
    data = reader.section(top, "monitoring", keys)
    enabled = data.get("enabled", Monitoring.enabled)
    if not isinstance(enabled, bool):
        reader.fail(
            "monitoring.enabled", f"must be true or false, got {enabled!r}", "write true or false"
        )
    retention = str(data.get("retention", Monitoring.retention)).strip()
    if not _DURATION_RE.match(retention):
        reader.fail(
            "monitoring.retention",
            f"is {retention!r}, not a Prometheus duration",
            "write a number and a unit: 15d, 12w, 1y (units h, d, w, y)",
        )
    size = str(data.get("retention_size", Monitoring.retention_size)).strip()
    if not _TSDB_SIZE_RE.match(size):
        reader.fail(
            "monitoring.retention_size",
            f"is {size!r}, not a Prometheus size",
            "write a number and a unit: 512MB, 10GB, 1TB",
        )
    prometheus_port = reader.port(
        data, "monitoring.prometheus_port", "prometheus_port", Monitoring.prometheus_port
    )
    alertmanager_port = reader.port(
        data, "monitoring.alertmanager_port", "alertmanager_port", Monitoring.alertmanager_port
    )
    log_port = reader.port(data, "monitoring.log_port", "log_port", Monitoring.log_port)
    log_days = reader.integer(
        data,
        "monitoring.log_retention_days",
        "log_retention_days",
        Monitoring.log_retention_days,
        minimum=1,
    )
    log_max_size = reader.size(
        data, "monitoring.log_max_size", "log_max_size", Monitoring.log_max_size
    )
    if parse_size(log_max_size) < _MIN_LOG_SIZE:
        reader.fail(
            "monitoring.log_max_size",
            f"is {log_max_size}, below the 64m the collector needs to rotate",
            "write at least 64m (e.g. 2g)",
        )
    taken = {ports.http: "ports.http", ports.https: "ports.https"}
    for where, port in (
        ("monitoring.prometheus_port", prometheus_port),
        ("monitoring.alertmanager_port", alertmanager_port),
    ):
        if port in taken:
            reader.fail(where, f"is {port}, like {taken[port]}", "give every port its own number")
        taken[port] = where
    return Monitoring(
        enabled=bool(enabled),
        retention=retention,
        retention_size=size,
        prometheus_port=prometheus_port,
        alertmanager_port=alertmanager_port,
        log_retention_days=log_days,
        log_max_size=log_max_size,
        log_port=log_port,
    )


def _deploy(reader: _Reader, top: Mapping[str, Any], name: str) -> Deploy:
    keys = {
        "batch",
        "remote_dir",
        "lock_wait",
        "lock_ttl",
        "health_timeout",
        "min_free_disk",
        "keep_releases",
    }
    data = reader.section(top, "deploy", keys)
    minimums = {"batch": 1, "lock_wait": 0, "lock_ttl": 30, "health_timeout": 5, "keep_releases": 2}
    numbers = {
        key: reader.integer(data, f"deploy.{key}", key, getattr(Deploy, key), minimum=minimum)
        for key, minimum in minimums.items()
    }
    remote_dir = reader.string(
        data, "remote_dir", default=f"{DEFAULT_REMOTE_ROOT}/{name}", where="deploy.remote_dir"
    ).rstrip("/")
    parts = remote_dir.split("/")
    if not _REMOTE_DIR_RE.match(remote_dir) or ".." in parts or "." in parts:
        reader.fail(
            "deploy.remote_dir",
            f"{remote_dir or '/'!r} is not an absolute directory below /",
            "write e.g. /srv/slipway/<name>, with letters, digits, '.', '_', '-' and '/' only "
            "(it goes into commands on the host)",
        )
    min_free_disk = reader.size(data, "deploy.min_free_disk", "min_free_disk", Deploy.min_free_disk)
    return Deploy(remote_dir=remote_dir, min_free_disk=min_free_disk, **numbers)


class _Reader:
    """Typed access to a YAML mapping, raising OpsError that names file, field and fix."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str, fix: str) -> None:
        field_name = f"field '{where}'" if where else "top level"
        raise OpsError(f"{self.path}: {field_name} {problem}. Fix: {fix}")

    def mapping(self, value: object, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(where, f"must be a mapping, got {_kind(value)}", "write key: value pairs")
            raise AssertionError  # unreachable: fail() raises
        return value

    def check_keys(
        self, data: Mapping[str, Any], prefix: str, required: set[str], optional: set[str]
    ) -> None:
        allowed = required | optional
        for key in data:
            if key not in allowed:
                where = f"{prefix}.{key}" if prefix else str(key)
                self.fail(
                    where,
                    "is unknown",
                    f"remove it or use one of: {', '.join(sorted(allowed))}",
                )
        for key in sorted(required - set(data)):
            where = f"{prefix}.{key}" if prefix else key
            self.fail(where, "is missing", f"add '{key}:' (see docs/environments.md)")

    def section(
        self, top: Mapping[str, Any], key: str, allowed: set[str], where: str = ""
    ) -> Mapping[str, Any]:
        where = where or key
        if key not in top or top[key] is None:
            return {}
        data = self.mapping(top[key], where)
        self.check_keys(data, where, set(), allowed)
        return data

    def string(
        self, data: Mapping[str, Any], key: str, default: str | None = None, where: str = ""
    ) -> str:
        where = where or key
        if key not in data:
            if default is None:
                self.fail(where, "is missing", f"add '{key}:' (see docs/environments.md)")
                raise AssertionError  # unreachable: fail() raises
            return default
        value = data[key]
        if not isinstance(value, str):
            self.fail(where, f"must be a string, got {_kind(value)} {value!r}", "write a string")
            raise AssertionError  # unreachable: fail() raises
        return value

    def choice(
        self,
        data: Mapping[str, Any],
        key: str,
        choices: tuple[str, ...],
        default: str | None = None,
    ) -> str:
        value = self.string(data, key, default)
        if value not in choices:
            self.fail(
                key, f"is {value!r}, not a supported value", f"use one of: {', '.join(choices)}"
            )
        return value

    def integer(
        self,
        data: Mapping[str, Any],
        where: str,
        key: str,
        default: int,
        minimum: int,
        maximum: int | None = None,
        expected: str = "",
    ) -> int:
        expected = expected or f"an integer >= {minimum}"
        value = data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(
                where, f"must be {expected}, got {_kind(value)} {value!r}", f"write {expected}"
            )
            raise AssertionError  # unreachable: fail() raises
        if value < minimum or (maximum is not None and value > maximum):
            self.fail(where, f"must be {expected}, got {value}", f"write {expected}")
        return value

    def port(self, data: Mapping[str, Any], where: str, key: str, default: int) -> int:
        expected = "a port number between 1 and 65535"
        return self.integer(data, where, key, default, 1, 65535, expected)

    def size(self, data: Mapping[str, Any], where: str, key: str, default: str) -> str:
        value = data.get(key, default)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return str(value)
        if isinstance(value, str) and _SIZE_RE.match(value.strip().lower()):
            return value.strip().lower()
        self.fail(where, f"must be a size like 512k, 50m or 1g, got {value!r}", "write e.g. 50m")
        raise AssertionError  # unreachable: fail() raises

    def cpus(self, value: object, where: str) -> float:
        expected = f"a number of CPUs >= {_MIN_CPUS}, e.g. 0.5 or 2"
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.fail(
                where, f"must be {expected}, got {_kind(value)} {value!r}", f"write {expected}"
            )
            raise AssertionError  # unreachable: fail() raises
        if not value >= _MIN_CPUS or value == float("inf"):
            self.fail(where, f"must be {expected}, got {value}", f"write {expected}")
        return float(value)

    def local_path(self, text: str, where: str) -> Path:
        """A file on this machine: `~` expanded, relative to the repository root."""
        try:
            path = Path(text.strip()).expanduser()
        except RuntimeError as exc:
            self.fail(where, f"{text!r} cannot be expanded ({exc})", "write an existing user's ~")
            raise AssertionError from None  # unreachable: fail() raises
        if not text.strip():
            self.fail(where, "is empty", "write a file path, or remove the field")
        if not path.is_absolute():
            path = paths.repo_root() / path
        if path.is_dir():
            self.fail(where, f"{path} is a directory", "name the file inside it")
        return path

    def https_url(self, text: str, where: str, allow_path: bool) -> tuple[str, int]:
        """(host, port) of an https:// URL; without a path unless allowed."""
        shape = "https://host[:port]" + ("/path" if allow_path else "")
        try:
            url = urlsplit(text.strip())
            host, port = url.hostname or "", url.port or 443
        except ValueError as exc:
            self.fail(where, f"{text!r} is not a URL ({exc})", f"write {shape}")
            raise AssertionError from None  # unreachable: fail() raises
        problem = ""
        if url.scheme != "https":
            problem = f"must use https, not {url.scheme or 'no scheme'}"
        elif not host or url.username is not None or url.password is not None:
            problem = "must name a host (and no user or password)"
        elif not _HOSTNAME_RE.match(host) and not _is_ip(host):
            problem = f"has an invalid host {host!r}"
        elif url.query or url.fragment or (not allow_path and url.path not in ("", "/")):
            problem = "must have no " + ("query" if allow_path else "path, query")
            problem += " or fragment"
        if problem:
            self.fail(where, f"{text!r} {problem}", f"write {shape}")
        return host, port

    def address(self, data: Mapping[str, Any], key: str, default: str) -> str:
        value = self.string(data, key, default)
        try:
            ipaddress.ip_address(value)
        except ValueError:
            self.fail(key, f"{value!r} is not an IP address", "use e.g. 127.0.0.1 or 0.0.0.0")
        return value

    def domains(self, data: Mapping[str, Any], key: str) -> tuple[str, ...]:
        value = data.get(key, ["localhost"])
        if not isinstance(value, list) or not value:
            self.fail(key, f"must be a non-empty list, got {value!r}", "write e.g. [localhost]")
        result: list[str] = []
        for index, item in enumerate(value):
            where = f"{key}[{index}]"
            if not isinstance(item, str) or not _HOSTNAME_RE.match(item.lower()):
                self.fail(where, f"{item!r} is not a DNS name", "use a name like example.org")
            result.append(item.lower())
        return tuple(result)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _kind(value: object) -> str:
    names = {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }
    if value is None:
        return "nothing"
    return names.get(type(value), type(value).__name__)

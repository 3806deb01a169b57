"""Environment files: environments/<name>.yaml loaded into typed, validated dataclasses.

Every error names the file, the field and the fix. Only what the `local` target needs exists
today; `hosts`, `registry` and ACME settings join as new sections and new `target`/`tls` values
without changing how the existing ones are read.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ops import paths
from ops.errors import OpsError

TARGETS = ("local",)
TLS_MODES = ("local-ca",)
# LISTINGS_ENV values the service accepts (its settings differ per mode, see docs/architecture.md).
LISTINGS_ENVS = ("local", "test", "staging", "production")

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
_SIZE_RE = re.compile(r"^([1-9][0-9]*)([kmg]?)$")
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


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
    def primary_domain(self) -> str:
        """The first domain: the one URLs are printed and checked with."""
        return self.domains[0]

    @property
    def https_url(self) -> str:
        """Public HTTPS base URL (port omitted when it is 443)."""
        port = "" if self.ports.https == 443 else f":{self.ports.https}"
        return f"https://{_url_host(self.primary_domain)}{port}"

    @property
    def http_url(self) -> str:
        """Public HTTP base URL (redirects to HTTPS)."""
        port = "" if self.ports.http == 80 else f":{self.ports.http}"
        return f"http://{_url_host(self.primary_domain)}{port}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


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
        },
    )
    declared = reader.string(top, "name")
    if declared != name:
        reader.fail("name", f"is {declared!r} but the file is {name}.yaml", f"set name: {name}")
    target = reader.choice(top, "target", TARGETS)
    tls = reader.choice(top, "tls", TLS_MODES, default="local-ca")
    domains = reader.domains(top, "domains")
    bind = reader.address(top, "bind", default="127.0.0.1")
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

    default_mode = name if name in LISTINGS_ENVS else ("local" if target == "local" else None)
    listings_env = reader.choice(top, "listings_env", LISTINGS_ENVS, default=default_mode)

    ports_data = reader.section(top, "ports", {"http", "https"})
    ports = Ports(
        http=reader.port(ports_data, "ports.http", "http", Ports.http),
        https=reader.port(ports_data, "ports.https", "https", Ports.https),
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
        max_feed_size=reader.size(nginx_data, "nginx.max_feed_size", "max_feed_size"),
    )
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
    )


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

    def section(self, top: Mapping[str, Any], key: str, allowed: set[str]) -> Mapping[str, Any]:
        if key not in top or top[key] is None:
            return {}
        data = self.mapping(top[key], key)
        self.check_keys(data, key, set(), allowed)
        return data

    def string(self, data: Mapping[str, Any], key: str, default: str | None = None) -> str:
        if key not in data:
            if default is None:
                self.fail(key, "is missing", f"add '{key}:' (see docs/environments.md)")
                raise AssertionError  # unreachable: fail() raises
            return default
        value = data[key]
        if not isinstance(value, str):
            self.fail(key, f"must be a string, got {_kind(value)} {value!r}", "write a string")
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

    def size(self, data: Mapping[str, Any], where: str, key: str) -> str:
        value = data.get(key, Nginx.max_feed_size)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return str(value)
        if isinstance(value, str) and _SIZE_RE.match(value.strip().lower()):
            return value.strip().lower()
        self.fail(where, f"must be a size like 512k, 50m or 1g, got {value!r}", "write e.g. 50m")
        raise AssertionError  # unreachable: fail() raises

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


def _kind(value: object) -> str:
    names = {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
    }
    if value is None:
        return "nothing"
    return names.get(type(value), type(value).__name__)

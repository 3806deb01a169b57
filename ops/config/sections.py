"""The sections that size and tune the stack: `listings_env`, `ports`, `replicas`, `nginx`,
`resources`, `monitoring` and `deploy`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ops.config.model import (
    DEFAULT_REMOTE_ROOT,
    LISTINGS_ENVS,
    RESOURCE_SERVICES,
    Deploy,
    Limits,
    Monitoring,
    Nginx,
    Ports,
    Replicas,
    Resources,
    parse_size,
)
from ops.config.reader import Reader

# Prometheus' --storage.tsdb.retention.time and .size (the units an operator would write).
_DURATION_RE = re.compile(r"^[1-9][0-9]*[hdwy]$")
_TSDB_SIZE_RE = re.compile(r"^[1-9][0-9]*(MB|GB|TB)$")
_MIN_LOG_SIZE = 64 * 1024 * 1024
# Docker refuses smaller memory limits ("Minimum memory limit allowed is 6MB").
_MIN_MEMORY = 6 * 1024**2
# remote_dir goes into commands run by the remote shell: only characters that need no quoting.
_REMOTE_DIR_RE = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
_CHECK_PATH_RE = re.compile(r"^/[!-~]*$")  # printable ASCII, no spaces


def read_listings_env(reader: Reader, top: Mapping[str, Any], name: str, target: str) -> str:
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


def read_ports(reader: Reader, top: Mapping[str, Any], local: bool) -> Ports:
    ports_data = reader.section(top, "ports", {"http", "https"})
    default_ports = Ports() if local else Ports(http=80, https=443)
    ports = Ports(
        http=reader.port(ports_data, "ports.http", "http", default_ports.http),
        https=reader.port(ports_data, "ports.https", "https", default_ports.https),
    )
    if ports.http == ports.https:
        reader.fail("ports", f"http and https are both {ports.http}", "give them different ports")
    return ports


def read_replicas(reader: Reader, top: Mapping[str, Any]) -> Replicas:
    replicas_data = reader.section(top, "replicas", {"api", "worker"})
    return Replicas(
        api=reader.integer(replicas_data, "replicas.api", "api", Replicas.api, minimum=1),
        worker=reader.integer(
            replicas_data, "replicas.worker", "worker", Replicas.worker, minimum=0
        ),
    )


def read_nginx(reader: Reader, top: Mapping[str, Any]) -> Nginx:
    rates = ("rate_limit", "viewer_rate_limit", "ready_rate_limit", "ingest_connections")
    bursts = ("rate_burst", "viewer_rate_burst", "ready_rate_burst")
    nginx_data = reader.section(top, "nginx", {*rates, *bursts, "max_feed_size"})
    knobs: dict[str, int] = {}
    for key in (*rates, *bursts):
        default = getattr(Nginx, key)
        minimum = 0 if key in bursts else 1
        knobs[key] = reader.integer(nginx_data, f"nginx.{key}", key, default, minimum=minimum)
    return Nginx(
        **knobs,
        max_feed_size=reader.size(
            nginx_data, "nginx.max_feed_size", "max_feed_size", Nginx.max_feed_size
        ),
    )


def read_resources(reader: Reader, top: Mapping[str, Any]) -> Resources:
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


def read_monitoring(reader: Reader, top: Mapping[str, Any], ports: Ports) -> Monitoring:
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


# How long before a short standby's end a watch left to its default ends (seconds).
WATCH_MARGIN = 10


def read_deploy(reader: Reader, top: Mapping[str, Any], name: str) -> Deploy:
    keys = {
        "batch",
        "remote_dir",
        "lock_wait",
        "lock_ttl",
        "health_timeout",
        "min_free_disk",
        "keep_releases",
        "standby",
        "checks",
        "check_latency",
        "watch",
        "watch_error_percent",
        "watch_min_requests",
    }
    data = reader.section(top, "deploy", keys)
    minimums = {
        "batch": 0,
        "lock_wait": 0,
        "lock_ttl": 30,
        "health_timeout": 5,
        "keep_releases": 2,
        "standby": 0,
        "check_latency": 1,
        "watch": 0,
        "watch_min_requests": 1,
    }
    defaults = {key: getattr(Deploy, key) for key in minimums}
    standby = data.get("standby", Deploy.standby)
    if isinstance(standby, int) and 0 < standby <= Deploy.watch:
        # A watch left to its default ends WATCH_MARGIN s before a short standby does.
        defaults["watch"] = max(0, standby - WATCH_MARGIN)
    numbers = {
        key: reader.integer(data, f"deploy.{key}", key, defaults[key], minimum=minimum)
        for key, minimum in minimums.items()
    }
    numbers["watch_error_percent"] = reader.integer(
        data,
        "deploy.watch_error_percent",
        "watch_error_percent",
        Deploy.watch_error_percent,
        minimum=0,
        maximum=100,
        expected="a percentage, an integer from 0 to 100",
    )
    if numbers["standby"] and numbers["watch"] >= numbers["standby"]:
        reader.fail(
            "deploy.watch",
            f"is {numbers['watch']}s, not shorter than deploy.standby ({numbers['standby']}s)",
            "make the watch shorter than the standby, so that a release the watch rejects is "
            "switched back to the replicas still on standby (or set standby to 0)",
        )
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
    checks = read_checks(reader, data)
    return Deploy(remote_dir=remote_dir, min_free_disk=min_free_disk, checks=checks, **numbers)


def read_checks(reader: Reader, data: Mapping[str, Any]) -> tuple[str, ...]:
    """deploy.checks: GET paths, each starting with / (none: an empty list)."""
    value = data.get("checks", list(Deploy.checks))
    if not isinstance(value, list):
        reader.fail(
            "deploy.checks",
            f"must be a list of paths, got {value!r}",
            "write a list of paths, e.g. [/api/v1/listings]",
        )
    for index, path in enumerate(value):
        if not isinstance(path, str) or not _CHECK_PATH_RE.match(path):
            reader.fail(
                f"deploy.checks[{index}]",
                f"is {path!r}, not a path",
                "write a path starting with / without spaces, e.g. /api/v1/listings?city=Paris",
            )
    return tuple(value)

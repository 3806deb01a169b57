"""Loading environments/<name>.yaml: the file read, the top level checked, each section read by
its module, all of it assembled into an `Environment`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ops import paths
from ops.config.backup import read_backup
from ops.config.hosts import read_hosts
from ops.config.model import TARGETS, TLS_MODES, Environment
from ops.config.reader import Reader
from ops.config.registry import read_registry
from ops.config.sections import (
    read_deploy,
    read_listings_env,
    read_monitoring,
    read_nginx,
    read_ports,
    read_replicas,
    read_resources,
)
from ops.config.tls import read_acme, read_connect_to, read_public_url
from ops.errors import OpsError

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# Default bind of a host: it serves the world on 80/443 (a workstation keeps to loopback).
_ALL_INTERFACES = "0.0.0.0"  # noqa: S104  # nosec B104
_OPTIONAL_KEYS = {
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
}


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
    """Validate the YAML document `data` read from `path` for environment `name`.

    The fields are read in a fixed order (the first mistake found is the one reported): the
    top level, then the sections in the order of the Environment call below.
    """
    reader = Reader(path)
    top = reader.mapping(data, "")
    reader.check_keys(top, "", required={"name", "target"}, optional=_OPTIONAL_KEYS)
    declared = reader.string(top, "name")
    if declared != name:
        reader.fail("name", f"is {declared!r} but the file is {name}.yaml", f"set name: {name}")
    target = reader.choice(top, "target", TARGETS)
    local = target == "local"
    tls = reader.choice(top, "tls", TLS_MODES, default="local-ca")
    domains = reader.domains(top, "domains")
    bind = reader.address(top, "bind", default="127.0.0.1" if local else _ALL_INTERFACES)
    project, overlay = _compose_names(reader, top)
    listings_env = read_listings_env(reader, top, name, target)
    ports = read_ports(reader, top, local)
    return Environment(
        name=name,
        source=path,
        target=target,
        tls=tls,
        domains=domains,
        bind=bind,
        ports=ports,
        project=project,
        overlay=overlay,
        listings_env=listings_env,
        replicas=read_replicas(reader, top),
        nginx=read_nginx(reader, top),
        ca_file=_ca_file(reader, top),
        hosts=read_hosts(reader, top, name, target),
        acme=read_acme(reader, top, target, tls, domains),
        public_url=read_public_url(reader, top, tls, domains),
        connect_to=read_connect_to(reader, top),
        registry=read_registry(reader, top),
        resources=read_resources(reader, top),
        monitoring=read_monitoring(reader, top, ports),
        backup=read_backup(reader, top),
        deploy=read_deploy(reader, top, name),
    )


def _compose_names(reader: Reader, top: Mapping[str, Any]) -> tuple[str, str]:
    """`project` (the compose project name) and `overlay` (a compose/<overlay>.yaml stem)."""
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
    return project, overlay


def _ca_file(reader: Reader, top: Mapping[str, Any]) -> Path | None:
    """`ca_file`: the CA that verifies public_url from this machine (None: by the tls mode)."""
    if top.get("ca_file") is None:
        return None
    return reader.local_path(reader.string(top, "ca_file"), "ca_file")

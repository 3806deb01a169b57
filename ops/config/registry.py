"""`registry:`: none (images go over SSH), one address, or the push and pull addresses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ops.config.model import Registry
from ops.config.reader import Reader, is_hostname, kind

_REGISTRY_PATH_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_REGISTRY_SHAPE = "host[:port][/namespace], e.g. registry.example.org/slipway"


def read_registry(reader: Reader, top: Mapping[str, Any]) -> Registry | None:
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
            f"must be none, an address or a mapping, got {kind(value)} {value!r}",
            f"write none, {_REGISTRY_SHAPE}, or {{push: <address>, pull: <address>}}",
        )
    if value.strip() == "none":
        return None
    address = _registry_address(reader, top, "registry", "registry")
    return Registry(push=address, pull=address)


def _registry_address(reader: Reader, data: Mapping[str, Any], key: str, where: str) -> str:
    """One registry address: host[:port][/namespace], as Docker reads an image name's prefix."""
    text = reader.string(data, key, where=where).strip().rstrip("/")
    host_port, _, namespace = text.partition("/")
    host, _, port = host_port.partition(":")
    problem = ""
    if text == "none":
        problem = "is none inside a registry mapping"
    elif "://" in text:
        problem = "has a scheme"
    elif not is_hostname(host.lower()) or (port and not _valid_port(port)):
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

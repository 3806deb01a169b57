"""Reading an environment file's YAML: typed access that fails naming the file, field and fix.

`Reader` is what every section reader (ops/config/hosts.py, tls.py, ...) reads through; the
shape checks they share (a DNS name, an IP address) live here too, one definition each.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from ops import paths
from ops.config.model import parse_size
from ops.errors import OpsError

# A DNS name: dot-separated labels of 1 to 63 letters, digits and hyphens, a label neither
# starting nor ending with a hyphen, 253 characters in all. One label is a name too (localhost).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$", re.IGNORECASE)
# Docker refuses CPU limits below one hundredth of a CPU.
_MIN_CPUS = 0.01


def is_hostname(text: str) -> bool:
    """True for a DNS name (see _HOSTNAME_RE); IP addresses in dotted decimal match too."""
    return bool(_HOSTNAME_RE.match(text))


def hostname_problem(text: str) -> str:
    """Why `text` is not a DNS name, in a few words ("" when it is one)."""
    if is_hostname(text):
        return ""
    if not text:
        return "it is empty"
    if len(text) > 253:
        return f"it is {len(text)} characters long, above 253"
    for label in text.split("."):
        if not label:
            return "it has an empty label (two dots in a row, or a dot at an end)"
        if len(label) > 63:
            return f"its label {label[:20]}... is {len(label)} characters long, above 63"
        if label.startswith("-") or label.endswith("-"):
            return f"its label {label!r} starts or ends with a hyphen"
    return "only letters, digits, hyphens and dots may appear in it"


def is_ip(text: str) -> bool:
    """True for an IPv4 or IPv6 address (IPv6 without brackets)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_size(text: str) -> bool:
    try:
        parse_size(text)
    except ValueError:
        return False
    return True


def kind(value: object) -> str:
    """What a YAML value is, for messages: "a mapping", "a list", "nothing", ..."""
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


class Reader:
    """Typed access to a YAML mapping, raising OpsError that names file, field and fix."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str, fix: str) -> NoReturn:
        field_name = f"field '{where}'" if where else "top level"
        raise OpsError(f"{self.path}: {field_name} {problem}. Fix: {fix}")

    def mapping(self, value: object, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(where, f"must be a mapping, got {kind(value)}", "write key: value pairs")
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
            return default
        value = data[key]
        if not isinstance(value, str):
            self.fail(where, f"must be a string, got {kind(value)} {value!r}", "write a string")
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
                where, f"must be {expected}, got {kind(value)} {value!r}", f"write {expected}"
            )
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
        if isinstance(value, str) and _is_size(value):
            return value.strip().lower()
        self.fail(where, f"must be a size like 512k, 50m or 1g, got {value!r}", "write e.g. 50m")

    def cpus(self, value: object, where: str) -> float:
        expected = f"a number of CPUs >= {_MIN_CPUS}, e.g. 0.5 or 2"
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.fail(
                where, f"must be {expected}, got {kind(value)} {value!r}", f"write {expected}"
            )
        if not value >= _MIN_CPUS or value == float("inf"):
            self.fail(where, f"must be {expected}, got {value}", f"write {expected}")
        return float(value)

    def local_path(self, text: str, where: str) -> Path:
        """A file on this machine: `~` expanded, relative to the repository root."""
        try:
            path = Path(text.strip()).expanduser()
        except RuntimeError as exc:
            self.fail(where, f"{text!r} cannot be expanded ({exc})", "write an existing user's ~")
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
        problem = ""
        if url.scheme != "https":
            problem = f"must use https, not {url.scheme or 'no scheme'}"
        elif not host or url.username is not None or url.password is not None:
            problem = "must name a host (and no user or password)"
        elif not is_hostname(host) and not is_ip(host):
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
            if not isinstance(item, str):
                self.fail(where, f"{item!r} is not a DNS name", "use a name like example.org")
            problem = hostname_problem(item.lower())
            if problem:
                self.fail(
                    where, f"{item!r} is not a DNS name: {problem}", "use a name like example.org"
                )
            result.append(item.lower())
        return tuple(result)

"""The load test's files: loadtests/profiles.yaml (how much load, for how long) and
loadtests/slo.yaml (the thresholds), read and validated; errors name the file, field and fix."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ops import paths
from ops.errors import OpsError
from ops.perf.loadtest.users import AGGREGATED, DETAIL, USERS

LOADTESTS_DIR = paths.REPO_ROOT / "loadtests"
LOCUSTFILE = LOADTESTS_DIR / "locustfile.py"
PROFILES_FILE = LOADTESTS_DIR / "profiles.yaml"
SLO_FILE = LOADTESTS_DIR / "slo.yaml"

_RUN_TIME_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_ENDPOINT_RE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE|HEAD) /\S*$")


class _Reader:
    """Typed access to a YAML mapping; errors name the file, the field and the fix."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str, fix: str) -> OpsError:
        place = f"field '{where}'" if where else "top level"
        return OpsError(f"{self.path}: {place} {problem}. Fix: {fix}")

    def load(self) -> Mapping[str, Any]:
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise OpsError(f"{self.path}: cannot read: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise OpsError(f"{self.path}: not valid YAML: {exc}") from exc
        return self.mapping(data, "")

    def mapping(self, value: object, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"must be a mapping, got {value!r}", "write key: value pairs")
        return value

    def keys(
        self, data: Mapping[str, Any], where: str, required: set[str], optional: set[str]
    ) -> None:
        allowed = required | optional
        prefix = f"{where}." if where else ""
        for key in data:
            if key not in allowed:
                raise self.fail(
                    f"{prefix}{key}",
                    "is unknown",
                    f"remove it or use one of: {', '.join(sorted(allowed))}",
                )
        for key in sorted(required - set(data)):
            raise self.fail(f"{prefix}{key}", "is missing", f"add '{key}:'")

    def number(self, data: Mapping[str, Any], key: str, where: str, zero: bool = False) -> float:
        value = data.get(key)
        expected = "a number >= 0" if zero else "a number above 0"
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or value < 0
            or (value == 0 and not zero)
        ):
            raise self.fail(where, f"must be {expected}, got {value!r}", f"write {expected}")
        return float(value)

    def integer(self, data: Mapping[str, Any], key: str, where: str, minimum: int) -> int:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(
                where, f"must be an integer >= {minimum}, got {value!r}", f"write e.g. {minimum}"
            )
        return value


def run_time_seconds(text: str) -> int:
    """Seconds in a locust run time ("30s", "5m", "1h30m", "90")."""
    text = text.strip()
    if text.isdigit():
        seconds = int(text)
    else:
        match = _RUN_TIME_RE.match(text)
        if not match or not any(match.groups()):
            raise ValueError(text)
        hours, minutes, secs = (int(group or 0) for group in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds <= 0:
        raise ValueError(text)
    return seconds


@dataclass(frozen=True)
class Profile:
    """How much load, for how long (one entry of profiles.yaml)."""

    name: str
    users: int
    spawn_rate: float
    run_time: str
    within_rate_limits: bool
    description: str = ""


def load_profiles(path: Path = PROFILES_FILE) -> dict[str, Profile]:
    """Every profile of profiles.yaml, validated."""
    reader = _Reader(path)
    top = reader.load()
    reader.keys(top, "", {"version", "profiles"}, set())
    reader.integer(top, "version", "version", 1)
    entries = reader.mapping(top["profiles"], "profiles")
    if not entries:
        raise reader.fail("profiles", "is empty", "define at least one profile (e.g. smoke)")
    minimum_users = sum(m.fixed_count or 1 for m in USERS.values())
    profiles: dict[str, Profile] = {}
    for name, raw in entries.items():
        where = f"profiles.{name}"
        data = reader.mapping(raw, where)
        reader.keys(
            data,
            where,
            {"users", "spawn_rate", "run_time", "within_rate_limits"},
            {"description"},
        )
        users = reader.integer(data, "users", f"{where}.users", 1)
        if users < minimum_users:
            raise reader.fail(
                f"{where}.users",
                f"is {users}, fewer than one user per user class ({', '.join(USERS)})",
                f"set users: {minimum_users} or more, so every endpoint is exercised",
            )
        run_time = data["run_time"]
        try:
            run_time_seconds(str(run_time))
        except ValueError:
            raise reader.fail(
                f"{where}.run_time",
                f"is {run_time!r}, not a run time",
                "write seconds, minutes or hours like 30s, 5m, 1h30m",
            ) from None
        within = data["within_rate_limits"]
        if not isinstance(within, bool):
            raise reader.fail(
                f"{where}.within_rate_limits",
                f"must be true or false, got {within!r}",
                "true when the profile must stay below nginx's per-client limits",
            )
        profiles[str(name)] = Profile(
            name=str(name),
            users=users,
            spawn_rate=reader.number(data, "spawn_rate", f"{where}.spawn_rate"),
            run_time=str(run_time),
            within_rate_limits=within,
            description=str(data.get("description", "")),
        )
    return profiles


def load_profile(name: str, path: Path = PROFILES_FILE) -> Profile:
    profiles = load_profiles(path)
    if name not in profiles:
        raise OpsError(
            f"{path}: no profile {name!r}. Fix: use --profile with one of: {', '.join(profiles)}"
        )
    return profiles[name]


@dataclass(frozen=True)
class Slo:
    """Thresholds one endpoint must meet."""

    max_error_percent: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class SloSet:
    """slo.yaml: a default for every endpoint (and the Aggregated row) plus per-endpoint ones."""

    path: Path
    version: int
    default: Slo
    endpoints: dict[str, Slo] = field(default_factory=dict)

    def for_endpoint(self, name: str) -> Slo:
        return self.endpoints.get(name, self.default)


_SLO_FIELDS = {"max_error_percent", "p95_ms", "p99_ms"}


def _slo(reader: _Reader, data: Mapping[str, Any], where: str, base: Slo | None) -> Slo:
    reader.keys(data, where, set() if base else _SLO_FIELDS, _SLO_FIELDS)
    values: dict[str, float] = {}
    for key in sorted(_SLO_FIELDS):
        if key in data:
            zero = key == "max_error_percent"
            values[key] = reader.number(data, key, f"{where}.{key}", zero=zero)
        elif base is not None:
            values[key] = getattr(base, key)
    slo = Slo(**values)
    if slo.max_error_percent > 100:
        raise reader.fail(
            f"{where}.max_error_percent",
            f"is {slo.max_error_percent:g}, above 100",
            "write a percentage between 0 and 100 (1 = one failed request in a hundred)",
        )
    if slo.p99_ms < slo.p95_ms:
        raise reader.fail(
            f"{where}.p99_ms",
            f"is {slo.p99_ms:g}, below p95_ms {slo.p95_ms:g}",
            "p99 is the slower tail: make p99_ms >= p95_ms",
        )
    return slo


def load_slos(path: Path = SLO_FILE) -> SloSet:
    """slo.yaml, validated; endpoint entries inherit the fields they leave out from `default`."""
    reader = _Reader(path)
    top = reader.load()
    reader.keys(top, "", {"version", "default"}, {"endpoints"})
    version = reader.integer(top, "version", "version", 1)
    default = _slo(reader, reader.mapping(top["default"], "default"), "default", None)
    endpoints: dict[str, Slo] = {}
    raw = top.get("endpoints") or {}
    for name, entry in reader.mapping(raw, "endpoints").items():
        where = f"endpoints.{name}"
        if name != AGGREGATED and not _ENDPOINT_RE.match(str(name)):
            raise reader.fail(
                where,
                "is not an endpoint name",
                f"write '<METHOD> <route template>' as locust names it, e.g. '{DETAIL}'",
            )
        endpoints[str(name)] = _slo(reader, reader.mapping(entry, where), where, default)
    return SloSet(path=path, version=version, default=default, endpoints=endpoints)

"""Secrets of an environment: `.env.<name>` (dotenv) merged under the process environment.

For environments on this machine (`target: local`) missing secrets are generated into the file
on first use; for hosts (`target: ssh`) they never are: a missing or unfit secret stops the
operation before anything is touched, every offending one named at once. Values are never
printed: only names appear in messages.

The optional login to the environment's registry (SLIPWAY_REGISTRY_USER and
SLIPWAY_REGISTRY_PASSWORD, `registry_credentials`) lives in the same places but is no release
secret: `load` and `require` return REQUIRED and the OPTIONAL ones that are set (Sentry, alert
receivers), which is all a deploy writes to a release.
"""

from __future__ import annotations

import os
import re
import secrets as token
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# The service's own rule for staging/production secrets (it refuses to start with them), applied
# before a deploy so it fails in pre-flight instead of on the host. The predicate is private in
# listings.settings; importing it keeps one rule rather than a copy that drifts.
from listings.settings import MIN_PASSWORD_LENGTH, MIN_PEPPER_LENGTH, STRICT_ENVIRONMENTS
from listings.settings import _looks_like_placeholder as looks_like_placeholder

from ops import paths
from ops.config import Environment
from ops.errors import OpsError

REQUIRED = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "LISTINGS_API_KEY_PEPPER", "BACKUP_PASSPHRASE")
# Optional: Sentry, and where Alertmanager sends alerts (docs/environments.md, "Secrets").
# Absent, the feature is off; present, they travel with the release like the required ones.
ALERT_RECEIVERS = ("ALERT_WEBHOOK_URL", "ALERT_SLACK_URL", "ALERT_EMAIL_TO")
# The off-site backup repository's S3 login: required when the environment sets backup.s3.
S3_SECRETS = ("BACKUP_S3_KEY", "BACKUP_S3_KEY_SECRET")
OPTIONAL = (
    "SENTRY_DSN",
    *S3_SECRETS,
    *ALERT_RECEIVERS,
    "ALERT_WATCHDOG_URL",
    "ALERT_SMTP_HOST",
    "ALERT_SMTP_FROM",
    "ALERT_SMTP_USER",
    "ALERT_SMTP_PASSWORD",
)
# What a release's secrets.env holds on a host (optional ones empty when unset).
RELEASE_SECRETS = REQUIRED + OPTIONAL
# compose/compose.yaml puts these into LISTINGS_DATABASE_URL and LISTINGS_REDIS_URL unescaped.
URL_PASSWORDS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD")
GENERATE_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
# Optional login to the environment's registry (`registry:`), both or neither. Used only on this
# machine (push) and for the duration of a pull on a host: never in a release's secrets.env.
REGISTRY_USER = "SLIPWAY_REGISTRY_USER"
REGISTRY_PASSWORD = "SLIPWAY_REGISTRY_PASSWORD"  # noqa: S105  # nosec B105 - a name
REGISTRY_NAMES = (REGISTRY_USER, REGISTRY_PASSWORD)

_LINE_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
# Values shipped in .env.example: never acceptable as real secrets.
_PLACEHOLDER_RE = re.compile(r"^(change-?me|<.*>|x+|placeholder)$", re.IGNORECASE)
# RFC 3986 unreserved characters: safe in the userinfo of a URL without percent-encoding.
_URL_SAFE_RE = re.compile(r"^[A-Za-z0-9._~-]+$")
# A registry user goes into HTTP basic auth (no ':') and onto a command line (quoted).
_REGISTRY_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")


@dataclass(frozen=True)
class Secrets:
    """Secret values for one environment, with the file they came from."""

    values: Mapping[str, str]
    file: Path
    generated: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never leak values into tracebacks or logs
        return f"Secrets(names={sorted(self.values)}, file={self.file}, generated={self.generated})"


@dataclass(frozen=True)
class RegistryCredentials:
    """Login to the environment's registry; the password never appears in repr or messages."""

    user: str
    password: str = field(repr=False)
    source: str = ""  # where they came from, for messages: the file and/or the environment

    def __repr__(self) -> str:
        return f"RegistryCredentials(user={self.user!r}, password=<hidden>, source={self.source!r})"


def env_file(env: Environment) -> Path:
    """Where the secrets of `env` live: .env.<name> at the repository root."""
    return paths.repo_root() / f".env.{env.name}"


def parse_dotenv(text: str, source: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines (comments, blank lines, `export`, single or double quotes)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE_RE.match(line)
        if not match:
            raise OpsError(f"{source}:{number}: expected KEY=VALUE, fix or remove this line")
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].strip()
        values[key] = value
    return values


def read_file(path: Path) -> dict[str, str]:
    """Values in a dotenv file; empty when it does not exist."""
    if not path.exists():
        return {}
    return parse_dotenv(path.read_text(encoding="utf-8"), path)


def generate_missing(path: Path, names: tuple[str, ...] = REQUIRED) -> tuple[str, ...]:
    """Append a random value for each name absent from `path`; never overwrite. Returns names."""
    existing = read_file(path)
    missing = tuple(name for name in names if not existing.get(name))
    if not missing:
        if path.exists():
            path.chmod(0o600)
        return ()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        if handle.tell() == 0:
            handle.write("# Generated by `invoke up`: local secrets, gitignored. Keep private.\n")
        elif not path.read_text(encoding="utf-8").endswith("\n"):
            handle.write("\n")
        for name in missing:
            handle.write(f"{name}={token.token_urlsafe(32)}\n")
    path.chmod(0o600)
    return missing


def load(
    env: Environment,
    environ: Mapping[str, str] | None = None,
    path: Path | None = None,
    generate: bool | None = None,
) -> Secrets:
    """Secrets of `env`: the file merged under the process environment, checked for completeness.

    `generate` defaults to True for local targets: missing secrets are written to the file.
    Secrets of any other target are never generated (see `require`).
    """
    environ = os.environ if environ is None else environ
    path = env_file(env) if path is None else path
    generate = env.is_local if generate is None else generate
    if generate and not env.is_local:
        raise OpsError(
            f"internal: secrets of environment {env.name!r} (target: {env.target}) are never "
            "generated; call secrets.require()"
        )
    generated: tuple[str, ...] = ()
    if generate:
        still_missing = tuple(n for n in REQUIRED if not environ.get(n))
        generated = generate_missing(path, still_missing)
    known = REQUIRED + OPTIONAL
    values = {**read_file(path), **{k: environ[k] for k in known if environ.get(k)}}
    found = problems(env, values)
    if found:
        listed = "".join(f"\n  - {problem}" for problem in found)
        raise OpsError(
            f"secrets of environment {env.name!r} are missing or unfit:{listed}\n"
            f"Fix: set them in {path} (see .env.example) or export them in the process "
            f"environment (CI secrets), which wins over the file; generate each value with "
            f"`{GENERATE_HINT}`"
        )
    present = {n: values[n] for n in OPTIONAL if values.get(n)}
    return Secrets(
        values={**{n: values[n] for n in REQUIRED}, **present}, file=path, generated=generated
    )


def require(
    env: Environment, environ: Mapping[str, str] | None = None, path: Path | None = None
) -> Secrets:
    """Secrets for a deploy to hosts, never generated; OpsError naming every unusable one.

    Values come from `.env.<name>` overridden by the process environment. The error lists every
    missing, placeholder or too short secret and says where to set them.
    """
    return load(env, environ, path, generate=False)


def problems(env: Environment, values: Mapping[str, str]) -> list[str]:
    """One line per required secret that `env` cannot use (empty when all are fine).

    Missing: always. Example values (`change-me`) and passwords that would break the URLs they
    go into: outside local targets. Short values and the service's placeholder words: whenever
    the service runs in staging or production mode, which would refuse them at start.
    """
    found: list[str] = []
    strict = env.listings_env in STRICT_ENVIRONMENTS
    for name in REQUIRED:
        value = values.get(name, "")
        minimum = MIN_PASSWORD_LENGTH if name in URL_PASSWORDS else MIN_PEPPER_LENGTH
        if not value:
            found.append(f"{name} is missing")
        elif not env.is_local and _PLACEHOLDER_RE.match(value):
            found.append(f"{name} is the placeholder from .env.example")
        elif not env.is_local and name in URL_PASSWORDS and not _URL_SAFE_RE.match(value):
            found.append(
                f"{name} has characters that break the connection URL it goes into "
                "(use letters, digits, '-', '_', '.', '~')"
            )
        elif strict and len(value) < minimum:
            found.append(
                f"{name} is shorter than {minimum} characters "
                f"(listings_env {env.listings_env} refuses it)"
            )
        elif strict and looks_like_placeholder(value):
            found.append(
                f"{name} looks like a placeholder or development value "
                f"(listings_env {env.listings_env} refuses it)"
            )
    if env.backup.s3 is not None:
        found += [
            f"{name} is missing: backup.s3 is set in {env.source.name} (the off-site repository's "
            "login)"
            for name in S3_SECRETS
            if not values.get(name)
        ]
    if not env.is_local:
        # They travel in the release's secrets.env, one quoted line each (release.dotenv).
        found += [
            f"{name} contains a quote or a line break, which the release's secrets.env cannot hold"
            for name in OPTIONAL
            if any(c in values.get(name, "") for c in "'\n\r")
        ]
    return found


def registry_credentials(
    env: Environment, environ: Mapping[str, str] | None = None, path: Path | None = None
) -> RegistryCredentials | None:
    """SLIPWAY_REGISTRY_USER and SLIPWAY_REGISTRY_PASSWORD of `env`, or None when neither is set.

    Each comes from the process environment when set there, else from `.env.<name>` (as for
    the other secrets). Both or neither: one alone, a placeholder, a user that HTTP basic auth
    cannot carry or a password with a line break stops the command, naming the variable only.
    """
    environ = os.environ if environ is None else environ
    path = env_file(env) if path is None else path
    from_file = read_file(path)
    values: dict[str, str] = {}
    origins: list[str] = []
    for name in REGISTRY_NAMES:
        if environ.get(name):
            values[name] = environ[name]
            origins.append("the process environment")
        elif from_file.get(name):
            values[name] = from_file[name]
            origins.append(str(path))
    if not values:
        return None
    where = (
        f"Fix: set both (or neither) in {path} or export them in the process environment, "
        "which wins over the file"
    )
    missing = [name for name in REGISTRY_NAMES if name not in values]
    if missing:
        present = next(name for name in REGISTRY_NAMES if name in values)
        raise OpsError(
            f"registry credentials of environment {env.name!r}: {present} is set but "
            f"{missing[0]} is not (both or neither). {where}"
        )
    user, password = values[REGISTRY_USER], values[REGISTRY_PASSWORD]
    found = []
    for name in REGISTRY_NAMES:
        if _PLACEHOLDER_RE.match(values[name]):
            found.append(f"{name} is the placeholder from .env.example")
    if not _REGISTRY_USER_RE.match(user):
        found.append(
            f"{REGISTRY_USER} is not a registry user name (letters, digits, '.', '_', '@', '+', "
            "'-', starting with a letter or digit, no ':')"
        )
    if "\n" in password or "\r" in password or password != password.strip():
        found.append(f"{REGISTRY_PASSWORD} has a line break or leading/trailing blanks")
    if found:
        listed = "".join(f"\n  - {problem}" for problem in found)
        raise OpsError(
            f"registry credentials of environment {env.name!r} are unfit:{listed}\n{where}"
        )
    return RegistryCredentials(user, password, " and ".join(dict.fromkeys(origins)))


def set_values(path: Path, values: Mapping[str, str]) -> None:
    """Set `values` in the dotenv file `path` (0600): lines of those names are replaced, the
    others kept as they are; names not there yet are appended. Values must need no quoting."""
    for name, value in values.items():
        if not _LINE_RE.match(f"{name}={value}") or not _URL_SAFE_RE.match(value):
            raise OpsError(f"internal: {name} has a value that needs quoting in {path}")
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    if not lines:
        lines = ["# Generated by `invoke sandbox.up`: local secrets, gitignored. Keep private."]
    done: set[str] = set()
    result: list[str] = []
    for line in lines:
        match = _LINE_RE.match(line.strip())
        name = match.group(1) if match else ""
        if name in values:
            if name not in done:
                result.append(f"{name}={values[name]}")
                done.add(name)
            continue
        result.append(line)
    result += [f"{name}={value}" for name, value in values.items() if name not in done]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(result) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)

"""`docker compose` invocations for an environment: argv and process environment, then a runner.

The builders are pure (argv + env from an Environment, its secrets and a few facts about the
checkout) so tests can assert exactly what would run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ops import paths, proc
from ops.config import Environment, parse_size
from ops.errors import OpsError
from ops.secrets import Secrets

if TYPE_CHECKING:
    import subprocess  # nosec B404: the result type only; proc runs the commands

# Inputs of the images: a dirty tree only changes the version when one of these changed.
BUILD_INPUTS = ("services", "nginx", "compose", "monitoring")

# Infrastructure images are tagged by the content of their build context, not by the release
# version: a release that does not change them neither rebuilds, ships nor restarts them (a
# deploy must not restart PostgreSQL because the API changed). compose variable -> context.
CONTENT_TAGGED = {
    "SLIPWAY_POSTGRES_TAG": "services/postgres",
    "SLIPWAY_REDIS_TAG": "services/redis",
    "SLIPWAY_NGINX_TAG": "nginx",
    "SLIPWAY_CERTBOT_TAG": "services/certbot",
    "SLIPWAY_PROMETHEUS_TAG": "monitoring/prometheus",
    "SLIPWAY_ALERTMANAGER_TAG": "monitoring/alertmanager",
    "SLIPWAY_EXPORTERS_TAG": "monitoring/exporters",
    "SLIPWAY_LOGS_TAG": "monitoring/logs",
}
# Compose profile of the services only `tls: acme` environments run (certbot).
# The data stores of compose.yaml: started first, before migrations (by `invoke up` and deploys).
DATA_SERVICES = ("postgres", "redis")
# The central log collector (compose/logging.yaml): started before everything whose lines it
# takes.
LOG_SERVICE = "logs"
ACME_PROFILE = "acme"
# Compose profile of the monitoring services (Prometheus, Alertmanager, exporters).
MONITORING_PROFILE = "monitoring"
# Overlay that sends every container's output to the central log collector (service `logs`).
LOGGING_OVERLAY = "logging.yaml"
# One-off backup tools (backup-drill, backup-restore, backup-export): run, never started by up.
TOOLS_PROFILE = "tools"
# The backups' off-site second repository on S3 (environments with `backup.s3`).
BACKUP_S3_OVERLAY = "backup-s3.yaml"


@dataclass(frozen=True)
class Build:
    """Facts about the checkout that end up in image tags and labels."""

    version: str
    git_sha: str
    ca_bundle: Path
    # compose variable (CONTENT_TAGGED) -> tag of that infrastructure image
    image_tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Invocation:
    """A command to run and the environment to run it with."""

    argv: list[str]
    env: dict[str, str]


# ---------------------------------------------------------------------------- version and sha


def _git(args: Sequence[str], root: Path) -> str | None:
    """What a git command printed; None when it failed or git is not installed (no checkout)."""
    try:
        result = proc.run(["git", "-C", str(root), *args], capture=True, check=False, quiet=True)
    except OpsError:  # git is not installed: check=False leaves no other error
        return None
    return result.stdout if result.returncode == 0 else None


def _dirty_digest(root: Path) -> str | None:
    """Short digest of uncommitted changes to the build inputs, None when they are clean."""
    diff = _git(["diff", "HEAD", "--binary", "--", *BUILD_INPUTS], root) or ""
    untracked = _git(["ls-files", "--others", "--exclude-standard", "--", *BUILD_INPUTS], root)
    files = sorted((untracked or "").split())
    if not diff and not files:
        return None
    digest = hashlib.sha256(diff.encode())
    for name in files:
        digest.update(name.encode() + b"\0")
        path = root / name
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:8]


def detect_version(root: Path, environ: Mapping[str, str]) -> tuple[str, str]:
    """(version, git sha). SLIPWAY_VERSION / SLIPWAY_GIT_SHA win; `dev`/`unknown` outside git.

    The version is `git describe --always` plus `-dirty.<digest>` when the build inputs have
    uncommitted changes, so an edited tree never reuses images built from another state.
    """
    sha = environ.get("SLIPWAY_GIT_SHA") or (_git(["rev-parse", "HEAD"], root) or "").strip()
    version = environ.get("SLIPWAY_VERSION", "")
    if not version:
        described = (_git(["describe", "--always", "--tags"], root) or "").strip()
        if not described:
            version = "dev"
        else:
            digest = _dirty_digest(root)
            version = f"{described}-dirty.{digest}" if digest else described
    return tag_safe(version), sha or "unknown"


def content_tag(root: Path, context: str) -> str:
    """`c.<12 hex>`: digest of the files of a build context (tracked and untracked, not ignored).

    Same files, same tag, whatever the commit: the image is built once and reused by every
    release that does not change it. Outside git every file under the directory counts.
    """
    listed = _git(["ls-files", "-z", "-co", "--exclude-standard", "--", context], root)
    directory = root / context
    if listed is None:
        names = sorted(str(p.relative_to(root)) for p in directory.rglob("*") if p.is_file())
    else:
        names = sorted(n for n in listed.split("\0") if n)
    digest = hashlib.sha256()
    for name in names:
        path = root / name
        if not path.is_file():  # deleted in the work tree but still in the index
            continue
        digest.update(name.encode() + b"\0")
        digest.update(oct(path.stat().st_mode & 0o111).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"c.{digest.hexdigest()[:12]}"


def content_tags(root: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """Tags of the infrastructure images; an exported SLIPWAY_<NAME>_TAG wins."""
    return {
        var: tag_safe(environ.get(var) or content_tag(root, context))
        for var, context in CONTENT_TAGGED.items()
    }


def tag_safe(version: str) -> str:
    """Docker tags allow [A-Za-z0-9_.-], at most 128 characters, not starting with . or -."""
    tag = re.sub(r"[^A-Za-z0-9_.-]", "-", version)[:128].lstrip(".-")
    return tag or "dev"


# ---------------------------------------------------------------------------- CA bundle


def pip_config_cert() -> str | None:
    """The `cert` pip is configured with (`pip config list`: global.cert, :env:.cert)."""
    try:
        result = proc.run(
            [os.environ.get("SLIPWAY_PYTHON", "python3"), "-m", "pip", "config", "list"],
            capture=True,
            check=False,
            quiet=True,
            timeout=30,
        )
    except OpsError:  # no such python, or pip did not answer in time: no configured cert
        return None
    return parse_pip_config_cert(result.stdout) if result.returncode == 0 else None


def parse_pip_config_cert(output: str) -> str | None:
    """Pick the cert out of `pip config list` output; :env: beats site/user/global."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        scope, _, name = key.strip().rpartition(".")
        if name == "cert":
            found[scope] = value.strip().strip("'\"")
    for scope in (":env:", "global", "site", "user"):
        if found.get(scope):
            return found[scope]
    return next(iter(found.values()), None)


def find_ca_bundle(environ: Mapping[str, str], state: Path, pip_cert: str | None = None) -> Path:
    """The CA bundle pip uses on this machine, else an empty file under `state`.

    Order: PIP_CERT, pip's configured cert, REQUESTS_CA_BUNDLE. Compose mounts it as the
    optional BuildKit secret `ca`; an empty file means "no extra CA" to the Dockerfiles.
    """
    for candidate in (environ.get("PIP_CERT"), pip_cert, environ.get("REQUESTS_CA_BUNDLE")):
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    empty = state / "empty-ca.pem"
    if not empty.exists():
        state.mkdir(parents=True, exist_ok=True)
        empty.write_text("", encoding="utf-8")
    return empty


def detect_build(environ: Mapping[str, str] | None = None) -> Build:
    """Version, sha and CA bundle for this checkout and machine."""
    environ = os.environ if environ is None else environ
    root = paths.repo_root()
    version, sha = detect_version(root, environ)
    pip_cert = None if environ.get("PIP_CERT") else pip_config_cert()
    return Build(
        version,
        sha,
        find_ca_bundle(environ, paths.state_dir(), pip_cert),
        content_tags(root, environ),
    )


# ---------------------------------------------------------------------------- argv and env


def compose_files(env: Environment, root: Path) -> list[Path]:
    """compose/compose.yaml plus the environment's overlay (and central logs where they run)."""
    base = root / "compose" / "compose.yaml"
    name = env.overlay or ("remote" if env.target == "ssh" else env.overlay_name)
    overlay = root / "compose" / f"{name}.yaml"
    files = [base, overlay]
    if runs_monitoring(env):
        files.append(root / "compose" / LOGGING_OVERLAY)
    if env.backup.s3 is not None:
        files.append(root / "compose" / BACKUP_S3_OVERLAY)
    return files


def tls_dir(env: Environment, root: Path) -> Path:
    """Where the environment's certificates are (mounted read-only into nginx)."""
    return root / ".slipway" / env.name


def compose_env(
    env: Environment,
    secrets: Secrets,
    build: Build,
    root: Path,
    base: Mapping[str, str],
) -> dict[str, str]:
    """The process environment the compose files expect, over `base` (normally os.environ)."""
    result = dict(base)
    result.update(secrets.values)
    result.update(
        {
            # The compose files pass SLIPWAY_ENV to the service as LISTINGS_ENV (its mode).
            "SLIPWAY_ENV": env.listings_env,
            "SLIPWAY_ENV_NAME": env.name,
            "SLIPWAY_VERSION": build.version,
            "SLIPWAY_GIT_SHA": build.git_sha,
            **build.image_tags,
            "SLIPWAY_BUILD_CA": str(build.ca_bundle),
            "SLIPWAY_BIND": env.bind,
            "SLIPWAY_HTTP_PORT": str(env.ports.http),
            "SLIPWAY_HTTPS_PORT": str(env.ports.https),
            "SLIPWAY_TLS_DIR": str(tls_dir(env, root)),
            "SLIPWAY_DOMAINS": " ".join(env.domains),
            "SLIPWAY_SERVER_NAME": " ".join(env.domains),
            "SLIPWAY_API_REPLICAS": str(env.replicas.api),
            "SLIPWAY_WORKER_REPLICAS": str(env.replicas.worker),
            "SLIPWAY_RATE_LIMIT": f"{env.nginx.rate_limit}r/s",
            "SLIPWAY_RATE_BURST": str(env.nginx.rate_burst),
            "SLIPWAY_MAX_FEED_SIZE": env.nginx.max_feed_size,
            "SLIPWAY_VIEWER_RATE_LIMIT": f"{env.nginx.viewer_rate_limit}r/s",
            "SLIPWAY_VIEWER_RATE_BURST": str(env.nginx.viewer_rate_burst),
            "SLIPWAY_READY_RATE_LIMIT": f"{env.nginx.ready_rate_limit}r/s",
            "SLIPWAY_READY_RATE_BURST": str(env.nginx.ready_rate_burst),
            "SLIPWAY_INGEST_CONNECTIONS": str(env.nginx.ingest_connections),
            "LISTINGS_MAX_FEED_BYTES": str(env.nginx.max_feed_bytes),
        }
    )
    result.update(env.resources.compose_env())
    result.update(env.backup.compose_env(env.name))
    result.update(acme_env(env))
    result.update(monitoring_env(env))
    result["COMPOSE_PROFILES"] = ",".join(profiles(env))
    if env.target == "ssh":
        # compose/remote.yaml's variables; `invoke deploy` writes the real release id.
        result.update(
            {
                "SLIPWAY_REMOTE_DIR": env.deploy.remote_dir,
                "SLIPWAY_TLS_VOLUME": tls_volume(env),
                "SLIPWAY_RELEASE": result.get("SLIPWAY_RELEASE") or "unreleased",
                "SLIPWAY_PUBLIC_HTTPS_PORT": str(env.public_port),
                "SLIPWAY_PROBE_CA_B64": probe_ca_b64(env),
            }
        )
    result.pop("COMPOSE_PROJECT_NAME", None)
    result.pop("COMPOSE_FILE", None)
    return result


def acme_env(env: Environment) -> dict[str, str]:
    """Variables of nginx's sites mode and the certbot service (all empty unless tls: acme)."""
    if env.tls != "acme" or env.acme is None:
        return {"SLIPWAY_TLS_SITES": ""}
    server_ca = ""
    if env.acme.server_ca is not None:
        try:
            server_ca = base64.b64encode(env.acme.server_ca.read_bytes()).decode()
        except OSError as exc:
            raise OpsError(
                f"{env.source}: acme.server_ca {env.acme.server_ca} cannot be read "
                f"({exc.strerror}). Fix: point it at the PEM bundle that verifies "
                f"{env.acme.directory}, or remove it to use the system CAs"
            ) from exc
    return {
        "SLIPWAY_TLS_SITES": " ".join(env.domains),
        "SLIPWAY_ACME_EMAIL": env.acme.email,
        "SLIPWAY_ACME_DIRECTORY": env.acme.directory,
        "SLIPWAY_ACME_SERVER_CA_B64": server_ca,
        "SLIPWAY_ACME_RENEW_BEFORE_DAYS": str(env.acme.renew_before_days),
    }


def runs_monitoring(env: Environment) -> bool:
    """Whether the environment's stack includes Prometheus, Alertmanager, the exporters and the
    central log collector (local stacks, one host, Docker Swarm alike)."""
    return env.monitoring.enabled


def profiles(env: Environment) -> list[str]:
    """The compose profiles the environment runs (COMPOSE_PROFILES)."""
    active = []
    if env.tls == "acme" and env.acme is not None:
        active.append(ACME_PROFILE)
    if runs_monitoring(env):
        active.append(MONITORING_PROFILE)
    return active


def monitoring_env(env: Environment) -> dict[str, str]:
    """Variables of the monitoring services (compose.yaml, local.yaml)."""
    return {
        "SLIPWAY_PROMETHEUS_RETENTION": env.monitoring.retention,
        "SLIPWAY_PROMETHEUS_RETENTION_SIZE": env.monitoring.retention_size,
        "SLIPWAY_PROMETHEUS_PORT": str(env.monitoring.prometheus_port),
        "SLIPWAY_ALERTMANAGER_PORT": str(env.monitoring.alertmanager_port),
        "SLIPWAY_PROBE_DOMAINS": " ".join(env.domains),
        "SLIPWAY_LOG_PORT": str(env.monitoring.log_port),
        "SLIPWAY_LOG_RETENTION_DAYS": str(env.monitoring.log_retention_days),
        "SLIPWAY_LOG_MAX_SIZE": str(parse_size(env.monitoring.log_max_size)),
    }


def probe_ca_b64(env: Environment) -> str:
    """The CA that verifies the public URL, base64 PEM, for the blackbox probe on a host; ""
    for the system CAs, or while a local CA does not exist yet (the deploy creates it first)."""
    verify = env.verify
    if isinstance(verify, Path) and verify.is_file():
        return base64.b64encode(verify.read_bytes()).decode()
    return ""


def tls_volume(env: Environment) -> str:
    """Docker volume holding a host environment's certificate and key (nginx reads it)."""
    return f"{env.project_name}-tls"


def compose_argv(env: Environment, secrets: Secrets, root: Path, args: Sequence[str]) -> list[str]:
    """`docker compose -p <project> [--env-file .env.<name>] -f base -f overlay <args>`."""
    argv = ["docker", "compose", "-p", env.project_name]
    if secrets.file.is_file():
        argv += ["--env-file", str(secrets.file)]
    for path in compose_files(env, root):
        argv += ["-f", str(path)]
    return [*argv, *args]


@dataclass(frozen=True)
class Compose:
    """Runs compose commands for one environment."""

    env: Environment
    secrets: Secrets
    build: Build
    root: Path
    # Compose profiles to enable over the environment's own (e.g. ACME_PROFILE for builds of
    # every image a release may run).
    profiles: tuple[str, ...] = ()

    def invocation(self, *args: str) -> Invocation:
        """The argv and env of `docker compose ... <args>` (pure)."""
        env = compose_env(self.env, self.secrets, self.build, self.root, os.environ)
        if self.profiles:
            active = [p for p in env.get("COMPOSE_PROFILES", "").split(",") if p]
            env["COMPOSE_PROFILES"] = ",".join(dict.fromkeys([*active, *self.profiles]))
        return Invocation(compose_argv(self.env, self.secrets, self.root, args), env)

    def check_files(self) -> None:
        """Fail with a clear message when a compose file is missing."""
        for path in compose_files(self.env, self.root):
            if not path.is_file():
                field = "overlay" if path.name != "compose.yaml" else "compose"
                raise OpsError(
                    f"compose file {path} is missing. Fix: create it, or set `overlay:` in "
                    f"{self.env.source} to an existing compose/<overlay>.yaml ({field})"
                )

    def run(
        self,
        *args: str,
        capture: bool = False,
        check: bool = True,
        what: str = "",
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `docker compose ... <args>` from the repository root (stdin: text fed to it)."""
        inv = self.invocation(*args)
        return proc.run(
            inv.argv,
            env=inv.env,
            cwd=self.root,
            capture=capture,
            check=check,
            what=what or f"docker compose {args[0] if args else ''}".strip(),
            stdin=stdin,
        )

    def config(self) -> dict[str, object]:
        """The rendered configuration (`docker compose config --format json`)."""
        inv = self.invocation("config", "--format", "json")
        result = proc.run(
            inv.argv, env=inv.env, cwd=self.root, capture=True, quiet=True, check=False
        )
        if result.returncode != 0:
            raise OpsError(f"compose configuration is invalid: {result.stderr.strip()}")
        data = json.loads(result.stdout)
        if not isinstance(data, dict):
            raise OpsError("`docker compose config --format json` did not return an object")
        return data

"""Service settings from `LISTINGS_*` environment variables, validated before anything starts."""

from __future__ import annotations

import os
import re
import socket
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from listings import __version__
from listings.healthcheck import HEARTBEAT_FILE, HEARTBEAT_MAX_AGE_S

Environment = Literal["local", "test", "staging", "production"]
STRICT_ENVIRONMENTS = frozenset({"staging", "production"})

# Words that mark a value somebody copied from an example instead of generating. "dev" only counts
# as a whole word so that a random token that happens to contain those letters is not refused.
_PLACEHOLDER = re.compile(
    r"change[-_ ]?me|example|placeholder|insecure|not[-_]?secret|(?:^|[^a-z0-9])dev(?:$|[^a-z0-9])"
    r"|^(?:secret|password|pass|test|x+|0+|1234.*)$",
    re.IGNORECASE,
)
MIN_PEPPER_LENGTH = 32
MIN_PASSWORD_LENGTH = 16


class SettingsError(Exception):
    """Settings are missing or unsafe; the message names each setting and how to fix it."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid settings:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LISTINGS_", extra="ignore", frozen=True)

    env: Environment = "local"
    database_url: SecretStr = SecretStr(
        "postgresql+asyncpg://listings:listings@127.0.0.1:5432/listings"
    )
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    api_key_pepper: SecretStr | None = None
    debug: bool = False
    # None means "follow the environment": on for local/test, off for staging/production.
    docs_enabled: bool | None = None
    max_feed_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    release: str = ""
    version: str = __version__
    git_sha: str = "unknown"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    web_concurrency: int = Field(default=2, ge=1, le=64)
    graceful_timeout: int = Field(default=30, ge=1)
    db_pool_size: int = Field(default=10, ge=1)
    db_timeout_s: float = Field(default=5.0, gt=0)

    worker_batch_size: int = Field(default=5000, ge=1)
    worker_max_attempts: int = Field(default=5, ge=1)
    worker_claim_idle_ms: int = Field(default=60_000, ge=100)
    # asyncpg command_timeout of the worker's connections: a hung statement fails the attempt.
    worker_db_timeout_s: float = Field(default=300.0, gt=0)
    worker_retry_base_ms: int = Field(default=1000, ge=1)
    worker_retry_max_ms: int = Field(default=300_000, ge=1)
    worker_block_ms: int = Field(default=1000, ge=10)
    worker_heartbeat_file: str = HEARTBEAT_FILE
    worker_heartbeat_max_age_s: int = Field(default=HEARTBEAT_MAX_AGE_S, ge=1)
    worker_metrics_port: int = Field(default=9100, ge=0, le=65535)
    # How often the worker samples the backlog gauges (stream, group, job counts).
    worker_metrics_interval_s: float = Field(default=10.0, gt=0)
    worker_consumer: str = ""
    # The reconciler (one worker at a time): re-queues jobs left `queued` without a message in
    # the stream for longer than reconcile_after_s, and deletes finished jobs after retention.
    worker_reconcile_interval_s: float = Field(default=60.0, gt=0)
    worker_reconcile_after_s: float = Field(default=300.0, gt=0)
    job_retention_days: int = Field(default=30, ge=1)
    stream_prefix: str = "listings"
    # Optional error reporting: unset or empty, sentry-sdk is never even imported.
    sentry_dsn: SecretStr | None = None

    @field_validator("sentry_dsn", mode="before")
    @classmethod
    def _empty_dsn_is_none(cls, value: object) -> object:
        # Compose passes `${SENTRY_DSN:-}`: an empty value means "off", not "invalid".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("sentry_dsn")
    @classmethod
    def _dsn_is_usable(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            problem = sentry_dsn_problem(value.get_secret_value())
            if problem:
                # Never echo the value: the DSN is a secret.
                raise ValueError(
                    f"not a Sentry DSN ({problem}); expected "
                    "https://<public key>@<host>/<project id>, or leave it empty to turn "
                    "error reporting off"
                )
        return value

    @property
    def strict(self) -> bool:
        return self.env in STRICT_ENVIRONMENTS

    @property
    def docs_on(self) -> bool:
        return (not self.strict) if self.docs_enabled is None else self.docs_enabled

    @property
    def consumer_name(self) -> str:
        # Unique per process so a restarted worker never mistakes another's pending job for its own.
        return self.worker_consumer or f"{socket.gethostname()}-{os.getpid()}"

    def pepper_bytes(self) -> bytes:
        if self.api_key_pepper is not None:
            return self.api_key_pepper.get_secret_value().encode()
        # Only reachable in local/test: staging and production refuse to start without one.
        return b"local-development-pepper"


def sentry_dsn_problem(dsn: str) -> str | None:
    """What sentry-sdk would refuse in this DSN (checked here so a typo stops the start)."""
    try:
        parts = urlsplit(dsn)
        parts.port  # noqa: B018 - parsing the port raises on a bad one
    except ValueError:
        return "it does not parse as a URL"
    if parts.scheme not in ("http", "https"):
        return "the scheme must be https or http"
    if not parts.hostname:
        return "the host is missing"
    if not parts.username:
        return "the public key before '@' is missing"
    if not parts.path.rsplit("/", 1)[-1].isdigit():
        return "the path must end with the numeric project id"
    return None


def _looks_like_placeholder(value: str) -> bool:
    return bool(_PLACEHOLDER.search(value))


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def safety_problems(settings: Settings) -> list[str]:
    """What makes these settings unfit for staging/production (empty list when fine)."""
    if not settings.strict:
        return []
    problems: list[str] = []
    pepper = settings.api_key_pepper.get_secret_value() if settings.api_key_pepper else ""
    fix_pepper = "generate one with `python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`"
    if not pepper:
        problems.append(f"LISTINGS_API_KEY_PEPPER is missing: {fix_pepper}")
    elif len(pepper) < MIN_PEPPER_LENGTH:
        problems.append(
            f"LISTINGS_API_KEY_PEPPER is shorter than {MIN_PEPPER_LENGTH} characters: {fix_pepper}"
        )
    elif _looks_like_placeholder(pepper):
        problems.append(f"LISTINGS_API_KEY_PEPPER looks like a placeholder: {fix_pepper}")
    for name, url in (
        ("LISTINGS_DATABASE_URL", settings.database_url.get_secret_value()),
        ("LISTINGS_REDIS_URL", settings.redis_url.get_secret_value()),
    ):
        password = _url_password(url)
        fix = "put the generated password from .env.<env> in the URL"
        if not password:
            problems.append(f"{name} has no password: {fix}")
        elif len(password) < MIN_PASSWORD_LENGTH:
            problems.append(
                f"{name} password is shorter than {MIN_PASSWORD_LENGTH} characters: {fix}"
            )
        elif _looks_like_placeholder(password):
            problems.append(f"{name} password looks like a placeholder: {fix}")
    if settings.debug:
        problems.append(f"LISTINGS_DEBUG is on in {settings.env}: set LISTINGS_DEBUG=false")
    if settings.docs_on:
        problems.append(
            f"LISTINGS_DOCS_ENABLED is on in {settings.env}: set LISTINGS_DOCS_ENABLED=false"
        )
    return problems


def load_settings(**overrides: object) -> Settings:
    """Read and validate settings; raise SettingsError naming every bad setting."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            problems.append(f"LISTINGS_{field.upper()}: {err['msg']}")
        raise SettingsError(problems) from None
    problems = safety_problems(settings)
    if problems:
        raise SettingsError(problems)
    return settings

"""What every task module shares: the --env default and OpsError → Exit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from invoke.exceptions import Exit

from ops.errors import OpsError

DEFAULT_ENV = "local"
ENV_HELP = "environment name: environments/<env>.yaml (default: local)"


@contextmanager
def exits() -> Iterator[None]:
    """Turn an OpsError into invoke's Exit: the message, no traceback, exit code 1."""
    try:
        yield
    except OpsError as exc:
        raise Exit(f"error: {exc}", code=1) from exc
    except KeyboardInterrupt as exc:
        raise Exit("interrupted", code=130) from exc

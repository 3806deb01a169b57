"""What every task module shares: the --env default, and how errors end a task.

OpsError is the operator's problem and its message names the fix: it ends the task with that
message and exit 1, no traceback. Anything else is a bug in ops: its traceback is printed,
then a line saying so, exit 70 (EX_SOFTWARE), so it is never mistaken for bad input.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from invoke.exceptions import Exit

from ops.errors import OpsError

DEFAULT_ENV = "local"
ENV_HELP = "environment name: environments/<env>.yaml (default: local)"


@contextmanager
def exits() -> Iterator[None]:
    """OpsError: its message, exit 1. Interrupted: exit 130. Anything else: a bug (exit 70)."""
    try:
        yield
    except OpsError as exc:
        raise Exit(f"error: {exc}", code=1) from exc
    except KeyboardInterrupt as exc:
        raise Exit("interrupted", code=130) from exc
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        raise Exit(
            f"BUG: {type(exc).__name__}: {exc}. This is an error in Slipway's ops code, not in "
            "your input or environment; the traceback above shows where. The step summary "
            "above says what had changed. Please report it with that output",
            code=70,
        ) from exc

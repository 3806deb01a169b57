"""Image tasks."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from ops import stack
from ops.tasks._common import exits


@task
def base(c: Context) -> None:
    """Provide debian:bookworm-slim (debootstrap + docker import when it is missing)."""
    with exits():
        print(stack.base_image())

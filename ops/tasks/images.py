"""Image tasks."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from ops.deploy import ship as shipping
from ops.stack import local as stack
from ops.tasks._common import exits


@task
def base(c: Context) -> None:
    """Provide debian:bookworm-slim (debootstrap + docker import when it is missing)."""
    with exits():
        print(stack.base_image())


@task(
    help={
        "version": "release version of the listings image (default: this checkout's)",
        "output": "tar file to write (docker save format)",
    }
)
def save(c: Context, output: str, version: str = "") -> None:
    """Write the images of a release (listings + postgres, redis, nginx) to one tar file."""
    with exits():
        print(shipping.save(Path(output), version or None))


@task(help={"input": "tar file written by `invoke images.save`"})
def load(c: Context, input: str) -> None:
    """Load images saved by `invoke images.save` into this machine's engine."""
    with exits():
        print(shipping.load(Path(input)))

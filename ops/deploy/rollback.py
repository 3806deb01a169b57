"""Which release a rollback puts back (pure): the one asked for, or the newest successful
release older than the current one."""

from __future__ import annotations

from collections.abc import Sequence

from ops.deploy.releases import Release
from ops.errors import OpsError


def choose_target(
    history: Sequence[Release], current: str | None, to: str | None, where: str, env_name: str
) -> Release:
    """The release to put back. `to` names one (it must be recorded); without it, the newest
    release that succeeded and is older than the current one."""
    if to:
        for release in history:
            if release.id == to:
                return release
        known = ", ".join(r.id for r in history) or "none"
        raise OpsError(f"no release {to!r} on {where}. Known releases: {known}")
    good = [r for r in history if r.outcome == "succeeded" and r.id != current]
    older = [r for r in good if current is None or r.id < current]
    if not older:
        raise OpsError(
            f"no earlier successful release to roll back to on {where} "
            f"(current: {current or 'none'}). Fix: `invoke releases --env={env_name}` "
            "lists them; pass one with --to"
        )
    return older[-1]

"""Which release a rollback puts back (pure): the one asked for, or the newest release older
than the current one that succeeded with another version (after B -> A -> B again, a plain
rollback goes back to A, not to the earlier release of B)."""

from __future__ import annotations

from collections.abc import Sequence

from ops.deploy.releases import Release
from ops.errors import OpsError


def choose_target(
    history: Sequence[Release], current: str | None, to: str | None, where: str, env_name: str
) -> Release:
    """The release to put back. `to` names one (it must be recorded); without it, the newest
    release older than the current one that succeeded with another version."""
    if to:
        for release in history:
            if release.id == to:
                return release
        known = ", ".join(r.id for r in history) or "none"
        raise OpsError(f"no release {to!r} on {where}. Known releases: {known}")
    running = next((r.version for r in history if r.id == current), None)
    good = [r for r in history if r.outcome == "succeeded" and r.version != running]
    older = [r for r in good if current is None or r.id < current]
    if not older:
        raise OpsError(
            f"no earlier successful release of another version to roll back to on {where} "
            f"(current: {current or 'none'}). Fix: `invoke releases --env={env_name}` "
            "lists them; pass one with --to"
        )
    return older[-1]


def marked(history: Sequence[Release], current: str | None, where: str, env_name: str) -> str:
    """The id a plain `invoke rollback` would put back ("" when none would)."""
    try:
        return choose_target(history, current, None, where, env_name).id
    except OpsError:
        return ""

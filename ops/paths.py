"""Where things live in the repository and in the per-machine state directory."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def repo_root() -> Path:
    """The repository root (SLIPWAY_ROOT overrides it, for tests that use a scratch tree)."""
    override = os.environ.get("SLIPWAY_ROOT")
    return Path(override).resolve() if override else REPO_ROOT


def environments_dir() -> Path:
    """Directory holding environments/<name>.yaml (SLIPWAY_ENVIRONMENTS_DIR overrides it)."""
    override = os.environ.get("SLIPWAY_ENVIRONMENTS_DIR")
    return Path(override).resolve() if override else repo_root() / "environments"


def state_dir() -> Path:
    """Gitignored per-machine state: certificates, the empty CA placeholder."""
    return repo_root() / ".slipway"


def env_state_dir(env: str) -> Path:
    """Per-environment state directory (.slipway/<env>/)."""
    return state_dir() / env


def ensure_state_dir() -> Path:
    """Create .slipway/ as 0700: it holds CA keys, only root (and dockerd) may enter it."""
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    return directory


def compose_dir() -> Path:
    """Directory of the versioned compose files."""
    return repo_root() / "compose"

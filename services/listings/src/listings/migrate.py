"""Alembic entry points for the CLI, the readiness check and the tests."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory


def alembic_config(database_url: str) -> Config:
    config = Config(str(files("listings") / "alembic.ini"))
    # Percent signs in passwords would otherwise be read as ini interpolation.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("postgresql+asyncpg://unused"))
    head = script.get_current_head()
    if head is None:
        raise RuntimeError("no migrations found in the package")
    return head


def known_revisions() -> frozenset[str]:
    """Every revision this release ships: a database at another one is newer than the code."""
    script = ScriptDirectory.from_config(alembic_config("postgresql+asyncpg://unused"))
    return frozenset(rev.revision for rev in script.walk_revisions())

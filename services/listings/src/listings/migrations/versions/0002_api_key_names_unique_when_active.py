"""API key names: unique among active keys only, so a revoked name can be used again.

Revision ID: 0002_api_key_names
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_api_key_names"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# PostgreSQL's name for the `unique=True` on api_keys.name in 0001.
OLD_CONSTRAINT = "api_keys_name_key"
INDEX = "uq_api_keys_name_active"


def upgrade() -> None:
    op.drop_constraint(OLD_CONSTRAINT, "api_keys", type_="unique")
    op.create_index(
        INDEX,
        "api_keys",
        ["name"],
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )


def downgrade() -> None:
    # Names may repeat among revoked keys now. Keep one row per name under its own name (the
    # active key, else the newest revoked one) and rename the other revoked rows so the old
    # constraint can come back; revoked keys never authenticate, so nothing stops working.
    op.execute(
        """
        UPDATE api_keys AS k
        SET name = k.name || ' (revoked #' || k.id || ')'
        WHERE k.revoked_at IS NOT NULL
          AND EXISTS (
            SELECT 1 FROM api_keys AS other
            WHERE other.name = k.name
              AND other.id <> k.id
              AND (other.revoked_at IS NULL OR other.id > k.id)
          )
        """
    )
    op.drop_index(INDEX, table_name="api_keys")
    op.create_unique_constraint(OLD_CONSTRAINT, "api_keys", ["name"])

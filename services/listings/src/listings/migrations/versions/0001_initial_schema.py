"""Initial schema: listings (with search indexes), api_keys, ingest_jobs, ingest_payloads.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "listings",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("source_id", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("price", sa.BigInteger, nullable=False),
        sa.Column("city", sa.Text, nullable=False),
        sa.Column("postal_code", sa.Text),
        sa.Column("address", sa.Text),
        sa.Column("bedrooms", sa.Integer),
        sa.Column("bathrooms", sa.Integer),
        sa.Column("area_m2", sa.Double),
        sa.Column("latitude", sa.Double),
        sa.Column("longitude", sa.Double),
        sa.Column("listed_at", TS),
        sa.Column("contact_name", sa.Text),
        sa.Column("contact_email", sa.Text),
        sa.Column("contact_phone", sa.Text),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column(
            "search",
            postgresql.TSVECTOR,
            sa.Computed(
                "to_tsvector('simple', coalesce(title, '') || ' ' || coalesce(description, ''))",
                persisted=True,
            ),
        ),
        sa.UniqueConstraint("source", "source_id", name="uq_listings_source_source_id"),
        sa.CheckConstraint(
            "kind IN ('apartment', 'house', 'studio', 'land', 'commercial')",
            name="ck_listings_kind",
        ),
        sa.CheckConstraint("price > 0", name="ck_listings_price_positive"),
    )
    # Each filter is paired with id so the planner can walk one index in keyset order (id DESC).
    op.create_index("ix_listings_city_id", "listings", [sa.text("lower(city)"), "id"])
    op.create_index("ix_listings_kind_id", "listings", ["kind", "id"])
    op.create_index("ix_listings_price_id", "listings", ["price", "id"])
    op.create_index("ix_listings_bedrooms_id", "listings", ["bedrooms", "id"])
    op.create_index("ix_listings_search", "listings", ["search"], postgresql_using="gin")

    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("key_hash", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("revoked_at", TS),
    )

    op.create_table(
        "ingest_jobs",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("accepted", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rejected", sa.Integer, nullable=False, server_default="0"),
        sa.Column(
            "errors", postgresql.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")
        ),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("request_id", sa.Text),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')", name="ck_ingest_jobs_status"
        ),
    )
    op.create_table(
        "ingest_payloads",
        sa.Column(
            "job_id",
            sa.Uuid,
            sa.ForeignKey("ingest_jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    # Feeds are stored once and read once: TOAST compression (pglz) would cost more CPU on
    # both sides than the disk it saves for these short-lived rows.
    op.execute("ALTER TABLE ingest_payloads ALTER COLUMN body SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("ingest_payloads")
    op.drop_table("ingest_jobs")
    op.drop_table("api_keys")
    op.drop_table("listings")

"""Table definitions (SQLAlchemy Core) shared by the API, the worker and the migrations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Computed,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR

metadata = MetaData()

KINDS = ("apartment", "house", "studio", "land", "commercial")
JOB_STATUSES = ("queued", "running", "done", "failed")

listings = Table(
    "listings",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("source", Text, nullable=False),
    Column("source_id", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text),
    Column("kind", Text, nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("city", Text, nullable=False),
    Column("postal_code", Text),
    Column("address", Text),
    Column("bedrooms", Integer),
    Column("bathrooms", Integer),
    Column("area_m2", Double),
    Column("latitude", Double),
    Column("longitude", Double),
    Column("listed_at", DateTime(timezone=True)),
    Column("contact_name", Text),
    Column("contact_email", Text),
    Column("contact_phone", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column(
        "search",
        TSVECTOR,
        Computed(
            "to_tsvector('simple', coalesce(title, '') || ' ' || coalesce(description, ''))",
            persisted=True,
        ),
    ),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
    # A name is unique among active keys only: a revoked key's name can be given again (0002).
    Index(
        "uq_api_keys_name_active",
        "name",
        unique=True,
        postgresql_where=text("revoked_at IS NULL"),
    ),
)

ingest_jobs = Table(
    "ingest_jobs",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("status", Text, nullable=False),
    Column("content_type", Text, nullable=False),
    Column("accepted", Integer, nullable=False, server_default="0"),
    Column("rejected", Integer, nullable=False, server_default="0"),
    Column("errors", JSONB, nullable=False, server_default="[]"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("request_id", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The feed body waits here, not in Redis, so Redis memory stays bounded by the number of jobs.
ingest_payloads = Table(
    "ingest_payloads",
    metadata,
    Column("job_id", Uuid, ForeignKey("ingest_jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("body", LargeBinary, nullable=False),
)

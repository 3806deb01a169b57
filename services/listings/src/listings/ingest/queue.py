"""Names and messages of the Redis streams that carry ingest jobs (the payload stays in PG)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from redis.asyncio import Redis

from listings.settings import Settings

DEAD_LETTER_MAXLEN = 10_000


@dataclass(frozen=True)
class StreamNames:
    stream: str
    group: str
    dead: str
    retry: str

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamNames:
        p = settings.stream_prefix
        return cls(f"{p}:ingest", f"{p}:ingest-workers", f"{p}:ingest:dead", f"{p}:ingest:retry")


@dataclass(frozen=True)
class JobMessage:
    job_id: UUID
    request_id: str

    def fields(self) -> dict[str, str]:
        return {"job_id": str(self.job_id), "request_id": self.request_id}

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> JobMessage:
        return cls(UUID(fields["job_id"]), fields.get("request_id", ""))


async def enqueue(redis: Redis, names: StreamNames, message: JobMessage) -> None:
    await redis.xadd(names.stream, message.fields())  # type: ignore[arg-type]

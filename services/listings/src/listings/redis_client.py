"""Redis clients that survive a Redis restart without the process being restarted."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


def connect(url: str, *, decode_responses: bool = False, socket_timeout: float = 2.0) -> Redis:
    # Pooled connections opened before a Redis restart are dead; one quick retry on a fresh
    # connection turns that into a non-event instead of one failed command per stale connection.
    return Redis.from_url(
        url,
        decode_responses=decode_responses,
        socket_timeout=socket_timeout,
        socket_connect_timeout=2,
        health_check_interval=10,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )

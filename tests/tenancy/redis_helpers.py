"""Redis clients and key prefixes for the tenancy tests, and a fake monotonic clock."""

from __future__ import annotations

import os
import uuid

from redis.asyncio import Redis

from agent_runtime.db.redis_client import make_redis_client

REDIS_URL = os.environ.get("AGENT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def new_client() -> Redis:
    return make_redis_client(REDIS_URL, timeout_s=2.0)


def unique_prefix() -> str:
    return f"test:rl:{uuid.uuid4().hex}:"


async def delete_prefix(client: Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await client.delete(*keys)


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now

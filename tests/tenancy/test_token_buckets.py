"""build_limiter: in-process buckets without Redis, a failover limiter over Redis with it.

Needs the Redis at ``REDIS_URL``; if it is down these tests fail.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from pydantic import SecretStr
from redis.asyncio import BlockingConnectionPool, Redis

from agent_runtime.config.settings import LimitSettings
from agent_runtime.tenancy.memory_buckets import InMemoryTokenBucket
from agent_runtime.tenancy.redis_buckets import DEFAULT_PREFIX, RedisTokenBucket
from agent_runtime.tenancy.token_buckets import FailoverLimiter, build_limiter
from tests.tenancy.redis_helpers import REDIS_URL


async def test_build_without_redis_is_in_memory_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = LimitSettings(redis_url=None, rate_limit_per_second=2, rate_limit_burst=3)
    with caplog.at_level(logging.WARNING, logger="agent_runtime.tenancy.token_buckets"):
        limiter = build_limiter(settings)
    assert isinstance(limiter, InMemoryTokenBucket)
    assert "AGENT_REDIS_URL" in caplog.text and "per process" in caplog.text
    assert (await limiter.hit("k")).limit == 3
    await limiter.close()


async def test_build_with_redis(caplog: pytest.LogCaptureFixture, redis_client: Redis) -> None:
    settings = LimitSettings(
        redis_url=SecretStr(REDIS_URL), redis_timeout_s=1.5, rate_limit_burst=7
    )
    with caplog.at_level(logging.DEBUG):
        built = build_limiter(settings)
    assert isinstance(built, FailoverLimiter)
    assert (built.mode, built.name) == ("fail_open", "requests_per_key")
    limiter = built.primary
    assert isinstance(limiter, RedisTokenBucket)
    assert REDIS_URL not in caplog.text
    key = f"test-{uuid.uuid4().hex}"
    try:
        await limiter.ping()
        decision = await limiter.hit(key)
        assert (decision.allowed, decision.limit, decision.remaining) == (True, 7, 6)
        assert await redis_client.exists(DEFAULT_PREFIX + key) == 1
    finally:
        await limiter.close()
        await redis_client.delete(DEFAULT_PREFIX + key)


async def test_build_sets_timeouts_and_never_logs_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = LimitSettings(
        redis_url=SecretStr("redis://:s3cret-pw@127.0.0.1:6379/0"), redis_timeout_s=1.25
    )
    with caplog.at_level(logging.DEBUG):
        built = build_limiter(settings)
    assert isinstance(built, FailoverLimiter)
    limiter = built.primary
    assert isinstance(limiter, RedisTokenBucket)
    assert "s3cret-pw" not in caplog.text
    pool = limiter._redis.connection_pool
    assert pool.connection_kwargs["socket_timeout"] == 1.25
    assert pool.connection_kwargs["socket_connect_timeout"] == 1.25
    assert isinstance(pool, BlockingConnectionPool)
    assert pool.timeout == 1.25
    await limiter.close()

"""Redis token buckets: key expiry, server time, one round trip per hit, Redis down or silent.

Needs the Redis at ``REDIS_URL``; if it is down these tests fail.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agent_runtime.config.settings import LimitSettings
from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.tenancy.redis_buckets import RedisTokenBucket
from agent_runtime.tenancy.token_buckets import FailoverLimiter, build_limiter
from tests.tenancy.redis_helpers import new_client
from tests.time_control import wait_for


async def test_redis_key_expires_when_the_bucket_would_be_full(
    redis_client: Redis, prefix: str
) -> None:
    bucket = RedisTokenBucket(new_client(), 10.0, 5, prefix=prefix)
    fast = RedisTokenBucket(new_client(), 1000.0, 5, prefix=prefix)
    try:
        decision = await bucket.hit("k")
        ttl_ms = await redis_client.pttl(prefix + "k")
        assert 0 < ttl_ms <= decision.reset_after_s * 1000
        assert decision.reset_after_s == pytest.approx(0.1, abs=0.002)  # one token at 10/s

        # The TTL is proven above; checking the key right after the hit would race its
        # 1 ms expiry on a loaded machine, so only its disappearance is checked here.
        await fast.hit("idle")  # 1 ms to refill at 1000/s, then Redis drops the key
        await wait_for(lambda: _gone(redis_client, prefix + "idle"), timeout_s=1)
    finally:
        await bucket.close()
        await fast.close()


async def _gone(redis_client: Redis, key: str) -> bool:
    return await redis_client.exists(key) == 0


async def test_redis_uses_server_time(redis_client: Redis, prefix: str) -> None:
    bucket = RedisTokenBucket(new_client(), 1.0, 5, prefix=prefix)
    try:
        await bucket.hit("k")
        seconds, micros = await redis_client.time()
        state = await redis_client.hgetall(prefix + "k")
        stored_ms = float(state[b"ts"])
        assert abs(seconds * 1000 + micros / 1000 - stored_ms) < 1000
        assert float(state[b"tokens"]) == pytest.approx(4, abs=0.01)
    finally:
        await bucket.close()


async def test_redis_one_round_trip_per_hit(prefix: str) -> None:
    client = new_client()
    commands: list[str] = []
    original = client.execute_command

    async def counting(*args: Any, **options: Any) -> Any:
        commands.append(str(args[0]))
        return await original(*args, **options)

    bucket = RedisTokenBucket(client, 1.0, 100, prefix=prefix)
    try:
        await bucket.hit("warm")  # may load the script first (NOSCRIPT fallback)
        client.execute_command = counting  # type: ignore[method-assign]
        for i in range(5):
            await bucket.hit(f"k{i}")
        assert commands == ["EVALSHA"] * 5
    finally:
        await bucket.close()


async def test_redis_down_is_dependency_unavailable() -> None:
    settings = LimitSettings(redis_url=SecretStr("redis://127.0.0.1:1/0"), redis_timeout_s=0.5)
    limiter = build_limiter(settings)
    assert isinstance(limiter, FailoverLimiter)
    limiter = limiter.primary
    try:
        started = time.monotonic()
        with pytest.raises(DependencyUnavailable) as caught:
            await limiter.hit("k")
        assert "127.0.0.1:1" not in caught.value.message
        with pytest.raises(DependencyUnavailable):
            await limiter.ping()
        assert time.monotonic() - started < 3
    finally:
        await limiter.close()


async def test_redis_timeout_is_dependency_unavailable() -> None:
    # A server that accepts connections and never answers.
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=0.2,
        retry=Retry(NoBackoff(), retries=0),
    )
    bucket = RedisTokenBucket(client, 1.0, 5)
    try:
        with pytest.raises(DependencyUnavailable):
            await bucket.hit("k")
        assert accepted
    finally:
        await bucket.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()

"""Token-bucket limiters: one conformance suite for Redis and in-memory, then specifics.

Needs the Redis at ``REDIS_URL``; if it is down these tests fail.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agent_runtime.config.settings import LimitSettings
from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.db.redis_client import make_redis_client
from agent_runtime.tenancy.memory_buckets import InMemoryTokenBucket
from agent_runtime.tenancy.rate_limiter import LimitDecision, RateLimiter
from agent_runtime.tenancy.redis_buckets import DEFAULT_PREFIX, RedisTokenBucket
from agent_runtime.tenancy.token_buckets import FailoverLimiter, build_limiter
from tests.time_control import wait_for

REDIS_URL = os.environ.get("AGENT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Time passing between calls in the real-clock (Redis) runs.
TOLERANCE_S = 0.05


def new_client() -> Redis:
    return make_redis_client(REDIS_URL, timeout_s=2.0)


def unique_prefix() -> str:
    return f"test:rl:{uuid.uuid4().hex}:"


async def delete_prefix(client: Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    client = new_client()
    await client.ping()  # a Redis that is down fails the test here
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis_client: Redis) -> AsyncIterator[str]:
    prefix = unique_prefix()
    yield prefix
    await delete_prefix(redis_client, prefix)


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    """Builds buckets of one kind and lets time pass for them (fake clock or real sleep)."""

    kind: str
    make: Callable[[float, int], RateLimiter]
    advance: Callable[[float], Awaitable[None]]
    made: list[RateLimiter] = field(default_factory=list)

    @property
    def tolerance_s(self) -> float:
        return TOLERANCE_S if self.kind == "redis" else 1e-9


@pytest.fixture(params=["memory", "redis"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "memory":
        clock = FakeClock()

        async def advance_clock(seconds: float) -> None:
            clock.now += seconds

        yield Harness(
            "memory", lambda rate, burst: InMemoryTokenBucket(rate, burst, clock), advance_clock
        )
        return
    prefix = unique_prefix()
    # One client per bucket: RedisTokenBucket owns (and closes) its client.
    clients: list[Redis] = [new_client()]

    def make_redis(rate: float, burst: int) -> RateLimiter:
        client = new_client()
        clients.append(client)
        return RedisTokenBucket(client, rate, burst, prefix=prefix)

    yield Harness("redis", make_redis, asyncio.sleep)
    await delete_prefix(clients[0], prefix)
    for client in clients:
        await client.aclose()


async def test_burst_then_refused(harness: Harness) -> None:
    bucket = harness.make(1.0, 5)
    decisions = [await bucket.hit("k") for _ in range(5)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]
    assert all(d.limit == 5 for d in decisions)
    refused = await bucket.hit("k")
    assert not refused.allowed
    assert refused.remaining == 0
    # one token comes back after 1 s at 1 token/s; some of it has already refilled
    assert 1.0 - harness.tolerance_s <= refused.retry_after_s <= 1.0 + 1e-9
    assert 5.0 - harness.tolerance_s <= refused.reset_after_s <= 5.0 + 1e-9
    headers = refused.headers()
    assert headers["X-RateLimit-Limit"] == "5"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset"] == "5"
    assert headers["Retry-After"] == "1"


async def test_retry_after_is_when_a_token_is_back(harness: Harness) -> None:
    # 4/s: a token every 250 ms, slow enough that a loaded machine cannot refill one
    # between the hits below.
    bucket = harness.make(4.0, 3)
    for _ in range(3):
        assert (await bucket.hit("k")).allowed
    refused = await bucket.hit("k")
    assert not refused.allowed
    assert 0.25 - harness.tolerance_s <= refused.retry_after_s <= 0.25 + 1e-9
    await harness.advance(refused.retry_after_s + 0.005)
    assert (await bucket.hit("k")).allowed


async def test_refills_to_full_burst(harness: Harness) -> None:
    bucket = harness.make(10.0, 4)
    for _ in range(4):
        await bucket.hit("k")
    drained = await bucket.hit("k")
    assert not drained.allowed
    await harness.advance(drained.reset_after_s + 0.01)
    again = [await bucket.hit("k") for _ in range(4)]
    assert [d.remaining for d in again] == [3, 2, 1, 0]
    assert all(d.allowed for d in again)


async def test_cost_above_one(harness: Harness) -> None:
    bucket = harness.make(1.0, 5)
    first = await bucket.hit("k", cost=3)
    assert (first.allowed, first.remaining) == (True, 2)
    refused = await bucket.hit("k", cost=3)
    assert (refused.allowed, refused.remaining) == (False, 2)
    # short by one token at 1 token/s
    assert 1.0 - harness.tolerance_s <= refused.retry_after_s <= 1.0 + 1e-9
    last = await bucket.hit("k", cost=2)
    assert (last.allowed, last.remaining) == (True, 0)


@pytest.mark.parametrize("cost", [0, -1, 6])
async def test_cost_outside_the_bucket_is_an_error(harness: Harness, cost: int) -> None:
    bucket = harness.make(1.0, 5)
    with pytest.raises(ValueError, match="cost"):
        await bucket.hit("k", cost=cost)


async def test_keys_are_independent(harness: Harness) -> None:
    bucket = harness.make(1.0, 2)
    await bucket.hit("a")
    await bucket.hit("a")
    assert not (await bucket.hit("a")).allowed
    other = await bucket.hit("b")
    assert (other.allowed, other.remaining) == (True, 1)


async def test_concurrent_hits_allow_exactly_the_burst(harness: Harness) -> None:
    bucket = harness.make(0.001, 50)  # no meaningful refill during the test
    decisions = await asyncio.gather(*(bucket.hit("hot") for _ in range(200)))
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 50
    assert sorted(d.remaining for d in allowed) == list(range(50))


async def test_per_call_rate_and_burst(harness: Harness) -> None:
    bucket = harness.make(1.0, 5)
    decisions = [await bucket.hit("k", rate_per_s=0.001, burst=2) for _ in range(3)]
    assert [(d.allowed, d.limit, d.remaining) for d in decisions] == [
        (True, 2, 1),
        (True, 2, 0),
        (False, 2, 0),
    ]
    assert decisions[2].retry_after_s > 100  # one token at 0.001/s
    with pytest.raises(ValueError, match="cost"):
        await bucket.hit("k", cost=3, burst=2)


async def test_adjust_refunds_and_debits_into_debt(harness: Harness) -> None:
    bucket = harness.make(0.001, 10)
    assert (await bucket.hit("k", cost=8)).remaining == 2
    await bucket.adjust("k", 5)  # the call used 3 of its 8
    assert (await bucket.hit("k", cost=7)).remaining == 0
    await bucket.adjust("k", 100)  # a refund never passes the bucket's size
    assert (await bucket.hit("k", cost=1)).remaining == 9
    await bucket.adjust("k", -25)  # used far more than reserved: in debt, at most -burst
    refused = await bucket.hit("k")
    assert (refused.allowed, refused.remaining) == (False, 0)
    # debt of 10 plus the one token asked: 11 tokens at 0.001/s
    assert refused.retry_after_s == pytest.approx(11_000, rel=0.01)
    await bucket.adjust("k", 0)  # nothing to do


async def test_ping(harness: Harness) -> None:
    await harness.make(1.0, 1).ping()


def test_headers_round_up_and_retry_after_at_least_one() -> None:
    refused = LimitDecision(
        allowed=False, limit=10, remaining=0, retry_after_s=0.02, reset_after_s=1.01
    )
    assert refused.headers() == {
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "2",
        "Retry-After": "1",
    }
    slow = refused.model_copy(update={"retry_after_s": 2.5})
    assert slow.headers()["Retry-After"] == "3"
    allowed = LimitDecision(allowed=True, limit=10, remaining=7, retry_after_s=0, reset_after_s=0.3)
    assert allowed.headers() == {
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "7",
        "X-RateLimit-Reset": "1",
    }


# --- Redis specifics -------------------------------------------------------------------


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


# --- in-memory specifics ----------------------------------------------------------------


async def test_memory_forgets_full_buckets() -> None:
    clock = FakeClock()
    bucket = InMemoryTokenBucket(10.0, 5, clock)  # full again 0.5 s after any hit
    for i in range(20):
        await bucket.hit(f"k{i}")
    assert bucket.tracked_keys == 20
    clock.now += 0.5
    await bucket.hit("fresh")
    assert bucket.tracked_keys == 1


async def test_memory_clock_going_back_does_not_drain() -> None:
    clock = FakeClock()
    bucket = InMemoryTokenBucket(1.0, 3, clock)
    await bucket.hit("k")
    clock.now -= 10
    decision = await bucket.hit("k")
    assert (decision.allowed, decision.remaining) == (True, 1)


# --- build_limiter ----------------------------------------------------------------------


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

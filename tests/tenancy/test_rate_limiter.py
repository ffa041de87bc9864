"""The RateLimiter contract: one conformance suite for Redis and in-memory buckets, and headers.

Needs the Redis at ``REDIS_URL``; if it is down these tests fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis

from agent_runtime.tenancy.memory_buckets import InMemoryTokenBucket
from agent_runtime.tenancy.rate_limiter import LimitDecision, RateLimiter
from agent_runtime.tenancy.redis_buckets import RedisTokenBucket
from tests.tenancy.redis_helpers import (
    FakeClock,
    delete_prefix,
    new_client,
    unique_prefix,
)

# Time passing between calls in the real-clock (Redis) runs.
TOLERANCE_S = 0.05


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

"""Per-key request limits sized by the tenant, the tenant-limits cache, and tokens per
minute around real model requests (a ``ModelRouter`` over the fake provider), on the real
databases and Redis (these tests fail when either is down)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from agent_runtime.config.settings import BudgetSettings, LimitSettings, StorageSettings
from agent_runtime.core.errors import DependencyUnavailable, RateLimited
from agent_runtime.core.records import Principal, TenantLimits
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.redis_client import make_redis_client
from agent_runtime.gateway.breakers import BreakerRegistry
from agent_runtime.gateway.model_router import ModelRouter
from agent_runtime.tenancy.fair_use import (
    TOKENS_PREFIX,
    RequestLimiter,
    TenantLimitsCache,
    TokenRateObserver,
    build_token_rate_observer,
    refusal_headers,
    refused,
)
from agent_runtime.tenancy.rate_limiter import LimitDecision
from agent_runtime.tenancy.redis_buckets import RedisTokenBucket
from agent_runtime.tenancy.tenants import TenantStore
from tests.gateway.router_harness import Recorder, ask, fake, provider_settings

REDIS_URL = os.environ.get("AGENT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class Source:
    """Tenant limits from a dict, counting reads; ``fail`` makes reads fail."""

    def __init__(self, limits: dict[str, TenantLimits]) -> None:
        self.limits = limits
        self.reads = 0
        self.fail = False

    async def get_limits(self, tenant_id: str) -> TenantLimits:
        self.reads += 1
        await asyncio.sleep(0.01)  # a query's latency, so that concurrent misses overlap
        if self.fail:
            raise DependencyUnavailable("database unavailable (OSError)")
        return self.limits.get(tenant_id, TenantLimits())


async def test_cache_shares_misses_expires_and_survives_a_dead_database() -> None:
    now = [0.0]
    source = Source({"t": TenantLimits(requests_per_minute=5)})
    cache = TenantLimitsCache(source, ttl_s=5.0, clock=lambda: now[0])
    got = await asyncio.gather(*(cache.get("t") for _ in range(20)))
    assert {g.requests_per_minute for g in got} == {5} and source.reads == 1
    now[0] += 4.9
    await cache.get("t")
    assert source.reads == 1
    now[0] += 0.2
    source.fail = True
    assert (await cache.get("t")).requests_per_minute == 5  # last known
    assert (await cache.get("unknown")) == TenantLimits()  # defaults
    source.fail = False
    cache.invalidate("t")
    source.limits["t"] = TenantLimits(requests_per_minute=7)
    assert (await cache.get("t")).requests_per_minute == 7


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = make_redis_client(REDIS_URL, 2.0)
    await client.ping()
    yield client
    await client.aclose()


@pytest.fixture
async def store(storage_settings: StorageSettings) -> AsyncIterator[MetadataStore]:
    metadata = MetadataStore(storage_settings)
    await metadata.setup()
    for tenant in ("limited", "plain"):
        await metadata.ensure_tenant(tenant, tenant)
    yield metadata
    await metadata.close()


async def test_requests_per_minute_override_sizes_the_key_bucket(
    store: MetadataStore, redis: Redis
) -> None:
    await TenantStore(store).set_limits("limited", TenantLimits(requests_per_minute=3))
    prefix = f"test:rpm:{uuid.uuid4().hex}:"
    limiter = RequestLimiter(
        RedisTokenBucket(make_redis_client(REDIS_URL, 2.0), 50.0, 100, prefix=prefix),
        TenantLimitsCache(TenantStore(store), ttl_s=5.0),
        default_rate_per_s=50.0,
        default_burst=100,
    )
    key = uuid.uuid4().hex[:12]
    try:
        limited = Principal(tenant_id="limited", key_id=key)
        decisions = [await limiter.check(limited) for _ in range(4)]
        assert [(d.allowed, d.limit) for d in decisions] == [(True, 3)] * 3 + [(False, 3)]
        # 3 a minute: one request back every 20 s
        assert 19 < decisions[3].retry_after_s <= 20
        plain = await limiter.check(Principal(tenant_id="plain", key_id=key + "p"))
        assert (plain.allowed, plain.limit, plain.remaining) == (True, 100, 99)
    finally:
        await redis.delete(prefix + f"key:{key}", prefix + f"key:{key}p")
        await limiter.close()


def test_refusal_headers_name_the_refusing_limit() -> None:
    error = RateLimited(
        "x", retry_after=2.2, limit="tokens_per_minute", maximum=1000, remaining=12, reset_after=7.1
    )
    assert refusal_headers(error) == {
        "X-RateLimit-Limit": "1000",
        "X-RateLimit-Remaining": "12",
        "X-RateLimit-Reset": "8",
        "Retry-After": "3",
    }
    assert refusal_headers(DependencyUnavailable("down", retry_after=0.2)) == {"Retry-After": "1"}


def test_a_refusal_says_the_wait_its_retry_after_header_gives() -> None:
    # A bucket a few ms short of a token once said "retry after 0.0 s" beside Retry-After: 1.
    decision = LimitDecision(
        allowed=False, limit=20, remaining=0, retry_after_s=0.04, reset_after_s=3.9
    )
    error = refused(decision)
    assert refusal_headers(error)["Retry-After"] == "1"
    assert error.message.endswith("retry after 1 s")


@dataclass
class Routed:
    router: ModelRouter
    observer: TokenRateObserver
    recorder: Recorder
    hits: list[str]


@pytest.fixture
async def routed(store: MetadataStore, redis: Redis) -> AsyncIterator[Routed]:
    settings = LimitSettings(redis_url=SecretStr(REDIS_URL), tenant_limits_cache_ttl_s=0)
    observer = build_token_rate_observer(settings, BudgetSettings(), TenantStore(store))
    hits: list[str] = []

    async def count(request: httpx.Request) -> None:
        hits.append(request.url.path)

    config = provider_settings()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fake()),
        base_url="http://fake/v1",
        event_hooks={"request": [count]},
    )
    recorder = Recorder()
    router = ModelRouter(
        config,
        "http://fake/v1",
        BreakerRegistry(5, 30.0),
        http_client=client,
        observers=[recorder, observer],
    )
    try:
        yield Routed(router, observer, recorder, hits)
    finally:
        await redis.delete(TOKENS_PREFIX + "tenant:limited", TOKENS_PREFIX + "tenant:plain")
        await router.close()
        await client.aclose()
        await observer.close()


async def bucket_tokens(redis: Redis, tenant: str) -> float:
    return float(await redis.hget(TOKENS_PREFIX + f"tenant:{tenant}", "tokens") or "nan")


async def test_tokens_are_reserved_then_settled_to_the_usage(
    routed: Routed, store: MetadataStore, redis: Redis
) -> None:
    await TenantStore(store).set_limits("limited", TenantLimits(tokens_per_minute=600))
    result = await routed.router.chat(ask("hello", max_tokens=100, tenant_id="limited"))
    used = result.usage.input_tokens + result.usage.output_tokens
    assert used > 0
    # Settled: the bucket holds 600 - used (plus a few tokens of refill at 10/s).
    assert 600 - used <= await bucket_tokens(redis, "limited") <= 600 - used + 5
    plan = routed.recorder.plans[-1]
    assert routed.observer.estimate(plan) == plan.prompt_tokens + 100


async def test_a_request_past_the_bucket_is_refused_before_any_call(
    routed: Routed, store: MetadataStore
) -> None:
    await TenantStore(store).set_limits("limited", TenantLimits(tokens_per_minute=300))
    await routed.router.chat(ask("hi", max_tokens=200, tenant_id="limited"))
    # Other calls in flight hold most of the minute's tokens.
    await routed.observer.limiter.hit("tenant:limited", 250, rate_per_s=5.0, burst=300)
    calls = len(routed.hits)
    with pytest.raises(RateLimited) as refused:
        await routed.router.chat(ask("hi again", max_tokens=100, tenant_id="limited"))
    assert len(routed.hits) == calls  # no provider call
    error = refused.value
    assert error.details["limit"] == "tokens_per_minute"
    assert error.details["maximum"] == 300
    assert error.retry_after > 0
    assert routed.recorder.reports[-1].outcome == "refused"
    # Alone larger than a whole minute's tokens: refused outright.
    with pytest.raises(RateLimited) as too_big:
        await routed.router.chat(ask("hi", max_tokens=5000, tenant_id="limited"))
    assert "more than the tenant's limit of 300 tokens per minute" in too_big.value.message


async def test_unlimited_tenants_never_touch_redis(routed: Routed, redis: Redis) -> None:
    await routed.router.chat(ask("hi", tenant_id="plain"))
    await routed.router.chat(ask("no tenant"))
    assert await redis.exists(TOKENS_PREFIX + "tenant:plain") == 0


async def test_default_tokens_per_minute_applies_without_an_override(
    store: MetadataStore,
) -> None:
    observer = build_token_rate_observer(
        LimitSettings(redis_url=None, tokens_per_minute=50), BudgetSettings(), TenantStore(store)
    )
    try:
        router = ModelRouter(
            provider_settings(),
            "http://fake/v1",
            BreakerRegistry(5, 30.0),
            http_client=httpx.AsyncClient(
                transport=httpx.ASGITransport(app=fake()), base_url="http://fake/v1"
            ),
            observers=[observer],
        )
        with pytest.raises(RateLimited):
            await router.chat(ask("hi", max_tokens=60, tenant_id="plain"))
        await router.close()
    finally:
        await observer.close()

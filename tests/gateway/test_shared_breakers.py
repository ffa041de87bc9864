"""Breakers shared through the real Redis: one replica's failures open them for all, one
trial call across replicas, no Redis call on the happy path, and local state without Redis.

Each "replica" is a registry with its own Redis client; each test uses its own key prefix.
Nothing waits out a timeout: the replicas share a :class:`ManualClock`, and the shared
state's opening times (Redis's own ``TIME``) are moved back by as much (:func:`elapse`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from agent_runtime.config.models_file import BreakerPolicy
from agent_runtime.core.errors import CircuitOpen, ProviderError, ProviderRejected
from agent_runtime.gateway.breakers import BreakerRegistry, call, guarded
from agent_runtime.gateway.shared_breakers import (
    CACHE_TTL_S,
    SharedBreaker,
    SharedBreakerRegistry,
    build_breakers,
)
from tests.gateway.router_harness import ask, fake, harness
from tests.time_control import ManualClock, wait_for

RESET_S = 30.0  # never waited for: see elapse

Replicas = Callable[..., SharedBreakerRegistry]
Elapse = Callable[[float], Awaitable[None]]


def counts(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError)


async def ok() -> str:
    return "ok"


async def boom() -> str:
    raise ProviderError("HTTP 500", model="m", status=500)


async def fail(breaker: SharedBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(ProviderError):
            await call(breaker, boom, counts=counts)


@pytest.fixture
def prefix() -> str:
    return f"test:breaker:{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def elapse(redis_url: str, prefix: str, clock: ManualClock) -> AsyncIterator[Elapse]:
    """Let ``seconds`` pass for every replica: their clock, and the shared opening times
    (Redis's ``TIME`` cannot be moved, so each model's ``opened_at`` is moved back)."""
    redis = Redis.from_url(redis_url)

    async def advance(seconds: float) -> None:
        clock.advance(seconds)
        async for key in redis.scan_iter(match=prefix + "*"):
            if await redis.type(key) == b"hash" and await redis.hexists(key, "opened_at"):
                await redis.hincrby(key, "opened_at", -round(seconds * 1000))

    yield advance
    await redis.aclose()


@pytest.fixture
async def replicas(redis_url: str, prefix: str, clock: ManualClock) -> AsyncIterator[Replicas]:
    made: list[SharedBreakerRegistry] = []

    def make(**options: Any) -> SharedBreakerRegistry:
        url = options.pop("url", redis_url)
        values: dict[str, Any] = {
            "fail_max": 2,
            "reset_timeout_s": RESET_S,
            "trial_ttl_s": 5.0,
            "prefix": prefix,
            "clock": clock,
            **options,
        }
        registry = SharedBreakerRegistry.from_url(url, **values)
        made.append(registry)
        return registry

    yield make
    for registry in made:
        await registry.close()
    redis = Redis.from_url(redis_url)
    keys = [key async for key in redis.scan_iter(match=prefix + "*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def test_one_replicas_failures_open_the_breaker_for_all(replicas: Replicas) -> None:
    seen_a: list[tuple[str, str, str]] = []
    seen_b: list[tuple[str, str, str]] = []
    a = replicas(on_transition=lambda *t: seen_a.append(t))
    b = replicas(on_transition=lambda *t: seen_b.append(t))
    await fail(a.get("m"), 2)
    assert a.states() == {"m": "open"}
    assert a.is_open("m")

    breaker = b.get("m")
    await breaker.sync()
    assert b.states() == {"m": "open"}
    assert breaker.refuses_calls()
    with pytest.raises(CircuitOpen):
        await call(breaker, ok, counts=counts)
    assert seen_a == [("m", "closed", "open")]
    assert seen_b == [], "a transition is counted by the replica that made it"


async def test_another_replicas_transition_is_seen_within_the_cache_ttl(
    replicas: Replicas, clock: ManualClock
) -> None:
    a, b = replicas(), replicas()
    watcher = b.get("m")
    assert not watcher.refuses_calls()  # starts a background refresh; cache says closed
    await wait_for(lambda: watcher._refresh is not None and watcher._refresh.done())
    await fail(a.get("m"), 2)
    assert not watcher.refuses_calls(), "within the cache TTL the local copy stands"
    clock.advance(CACHE_TTL_S)
    # The next look starts a refresh, which picks up replica A's transition.
    await wait_for(watcher.refuses_calls, timeout_s=5)


async def test_the_happy_path_makes_no_redis_call(replicas: Replicas) -> None:
    registry = replicas()
    breaker = registry.get("m")
    await breaker.sync()
    calls: list[str] = []
    link = registry._link
    original = link.run

    async def counting(op: Any) -> Any:
        calls.append("redis")
        return await original(op)

    link.run = counting  # type: ignore[method-assign]
    for _ in range(200):
        assert not breaker.refuses_calls()
        assert await call(breaker, ok, counts=counts) == "ok"
    assert calls == [], "closed, no failures: successes and admissions stay local"

    await fail(breaker)
    assert calls == ["redis"]
    assert breaker.fail_counter == 1
    assert await call(breaker, ok, counts=counts) == "ok"
    assert calls == ["redis", "redis"], "a success resets a non-zero shared counter, once"
    assert breaker.fail_counter == 0
    assert await call(breaker, ok, counts=counts) == "ok"
    assert len(calls) == 2


async def test_a_success_resets_the_shared_consecutive_count(replicas: Replicas) -> None:
    a, b = replicas(), replicas()
    await fail(a.get("m"))
    breaker = b.get("m")
    await breaker.sync()
    assert breaker.fail_counter == 1
    assert await call(breaker, ok, counts=counts) == "ok"
    await fail(a.get("m"))
    assert a.states() == {"m": "closed"}, "1 + reset + 1 is not 2 in a row"


async def test_exactly_one_trial_call_across_replicas(replicas: Replicas, elapse: Elapse) -> None:
    a, b, c = replicas(), replicas(), replicas()
    await fail(a.get("m"), 2)
    await elapse(RESET_S)
    for registry in (b, c):
        await registry.sync()

    release = asyncio.Event()
    started = asyncio.Event()

    async def slow() -> str:
        started.set()
        await release.wait()
        return "recovered"

    outcomes = await asyncio.gather(
        *(r.get("m").admit() for r in (a, b, c)), return_exceptions=True
    )
    trials = [o for o in outcomes if not isinstance(o, BaseException) and o.trial]
    refused = [o for o in outcomes if isinstance(o, CircuitOpen)]
    assert (len(trials), len(refused)) == (1, 2), outcomes
    winner = next(r for r, o in zip((a, b, c), outcomes, strict=True) if o in trials)
    await winner.get("m").record_success(trials[0])
    for registry in (a, b, c):
        await registry.sync()
        assert registry.states() == {"m": "closed"}
    assert not started.is_set()
    release.set()


async def test_a_failed_trial_reopens_for_everyone(replicas: Replicas, elapse: Elapse) -> None:
    a, b = replicas(), replicas()
    await fail(a.get("m"), 2)
    await elapse(RESET_S)
    await b.sync()
    await fail(b.get("m"))  # b's call is the trial, and it fails
    await a.sync()
    assert a.states() == b.states() == {"m": "open"}
    assert a.get("m").refuses_calls()


async def test_an_uncounted_trial_releases_the_lock_for_a_new_trial(
    replicas: Replicas, elapse: Elapse
) -> None:
    a = replicas()
    breaker = a.get("m")
    await fail(breaker, 2)
    await elapse(RESET_S)

    async def rejected() -> str:
        raise ProviderRejected("bad request", model="m", status=400)

    with pytest.raises(ProviderRejected):
        await call(breaker, rejected, counts=counts)
    assert a.states() == {"m": "half-open"}
    assert await call(breaker, ok, counts=counts) == "ok", "the next call is a new trial"
    assert a.states() == {"m": "closed"}


async def test_a_dead_replicas_trial_expires(
    replicas: Replicas, elapse: Elapse, clock: ManualClock, redis_url: str, prefix: str
) -> None:
    a, b = replicas(trial_ttl_s=0.2), replicas(trial_ttl_s=0.2)
    await fail(a.get("m"), 2)
    await elapse(RESET_S)
    ticket = await a.get("m").admit()  # replica a takes the trial, then dies silently
    assert ticket.trial
    await b.sync()
    with pytest.raises(CircuitOpen):
        await b.get("m").admit()
    # Redis expires the lock on its own time: wait for that, then let b's short "trial
    # busy" memory pass.
    redis = Redis.from_url(redis_url)
    try:
        await wait_for(lambda: _gone(redis, prefix + "m:trial"), timeout_s=5)
    finally:
        await redis.aclose()
    clock.advance(CACHE_TTL_S)
    assert (await b.get("m").admit()).trial


async def _gone(redis: Redis, key: str) -> bool:
    return await redis.exists(key) == 0


async def test_unreachable_redis_degrades_to_local_state(
    replicas: Replicas, caplog: pytest.LogCaptureFixture
) -> None:
    registry = replicas(url="redis://127.0.0.1:1/0", retry_s=60.0)
    breaker = registry.get("m")
    with caplog.at_level(logging.WARNING):
        assert not breaker.refuses_calls()
        await wait_for(lambda: not registry.shared)  # the background refresh failed
        assert await call(breaker, ok, counts=counts) == "ok", "a call never fails for Redis"
        await fail(breaker, 2)
    assert not registry.shared
    assert registry.states() == {"m": "open"}, "the local breaker took over"
    assert breaker.refuses_calls()
    warnings = [r for r in caplog.records if "breaker state in Redis" in r.getMessage()]
    assert len(warnings) == 1, "one line per outage, not one per call"


def test_without_redis_breakers_are_per_replica(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        registry = build_breakers(BreakerPolicy(fail_max=3), None)
    assert isinstance(registry, BreakerRegistry)
    assert registry.fail_max == 3
    assert "breakers are kept per router replica" in caplog.text


async def test_two_routers_share_one_breaker(replicas: Replicas) -> None:
    a, b = replicas(), replicas()
    app = fake(failing_models=["fake-smart"])
    async with harness(app, breakers=a) as first, harness(app, breakers=b) as second:
        for _ in range(2):
            result = await first.router.chat(ask("hello"))
            assert result.model == "fake-fallback"
        await b.sync()
        result = await second.router.chat(ask("hello"))
    assert [(x.model, x.outcome) for x in result.attempts] == [
        ("fake-smart", "circuit_open"),
        ("fake-fallback", "ok"),
    ]
    assert second.hits["fake-smart"] == 0, "replica B never called the failing primary"


async def test_guarded_records_a_failure_through_redis(replicas: Replicas) -> None:
    breaker = replicas(fail_max=1).get("m")
    with pytest.raises(ProviderError):
        async with guarded(breaker, counts=counts):
            raise ProviderError("HTTP 503", model="m", status=503)
    assert breaker.current_state == "open"

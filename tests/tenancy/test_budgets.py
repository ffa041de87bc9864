"""Budget guard: one suite run against the Redis counters and the in-process ones, then Redis
outages and the race for the last dollar.

Needs the Redis at ``AGENT_TEST_REDIS_URL`` and the Postgres of ``tests/runtime/conftest``;
if either is down these tests fail.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from agent_runtime.config.settings import BudgetSettings, LimitSettings
from agent_runtime.core.errors import BudgetExceeded, DependencyUnavailable, http_status
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.redis_client import make_redis_client
from agent_runtime.tenancy.budget_rows import BudgetStore
from agent_runtime.tenancy.budget_spend import InMemorySpend, RedisSpend, SpendBackend
from agent_runtime.tenancy.budgets import EXPIRY_GRACE, BudgetGuard, Reservation, build_budget_guard
from tests.backends import backend_settings
from tests.tenancy.budget_helpers import add_key, open_store
from tests.tenancy.redis_helpers import REDIS_URL, delete_prefix, new_client

START = datetime(2026, 12, 2, 23, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Harness:
    kind: str
    store: MetadataStore
    budgets: BudgetStore
    clock: Clock
    make_backend: Callable[[], SpendBackend]
    prefix: str
    redis: Redis

    def guard(
        self, cache_ttl_s: float = 0.0, cache_clock: Callable[[], float] = time.monotonic
    ) -> BudgetGuard:
        return BudgetGuard(
            self.budgets,
            self.make_backend(),
            cache_ttl_s=cache_ttl_s,
            prefix=self.prefix,
            clock=self.clock,
            cache_clock=cache_clock,
        )


@pytest.fixture(params=["memory", "redis"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    prefix = f"test:budget:{uuid.uuid4().hex}:"
    redis = new_client()
    await redis.ping()  # a Redis that is down fails the test here
    clock = Clock()
    memory = InMemorySpend(clock)  # one process: every guard shares its counters

    def make_backend() -> SpendBackend:
        return memory if request.param == "memory" else RedisSpend(new_client())

    async with backend_settings("sqlite", tmp_path) as settings:
        store = await open_store(settings, ("acme", "globex"))
        try:
            yield Harness(
                request.param, store, BudgetStore(store), clock, make_backend, prefix, redis
            )
        finally:
            await store.close()
            await delete_prefix(redis, prefix)
            await redis.aclose()


async def _spent(guard: BudgetGuard, tenant: str, key: str | None = None) -> list[int]:
    return [s.spent_micro_usd for s in await guard.status(tenant, key)]


async def test_reserve_then_settle_to_the_real_cost(harness: Harness) -> None:
    await harness.budgets.set_budget("acme", "day", 5)
    guard = harness.guard()
    reservation = await guard.reserve("acme", None, Decimal("0.0500001"))  # rounds up
    assert reservation.amount_micro_usd == 50_001
    assert reservation.budgets == ("tenant acme, daily, $5.00",)
    assert await _spent(guard, "acme") == [50_001]
    await guard.settle(reservation, Decimal("0.0123454"))  # half-even to the micro-dollar
    await guard.settle(reservation, 99)  # a second settle of one reservation: nothing
    [status] = await guard.status("acme")
    assert (status.spent_micro_usd, status.remaining_micro_usd) == (12_345, 4_987_655)
    assert (status.window_start, status.resets_at) == (
        datetime(2026, 12, 2, tzinfo=UTC),
        datetime(2026, 12, 3, tzinfo=UTC),
    )
    await guard.release(await guard.reserve("acme", None, 1))
    assert await _spent(guard, "acme") == [12_345]
    await guard.close()


async def test_refusal_names_the_budget_its_spend_and_reset(harness: Harness) -> None:
    await harness.budgets.set_budget("acme", "day", 5)
    guard = harness.guard()
    await guard.settle(await guard.reserve("acme", "k1", Decimal("4.98")), Decimal("4.98"))
    with pytest.raises(BudgetExceeded) as refused:
        await guard.reserve("acme", "k1", Decimal("0.05"))
    assert refused.value.message == (
        "budget 'tenant acme, daily, $5.00' would be exceeded (spent $4.98, this call may "
        "cost up to $0.05); it resets at 2026-12-03T00:00:00Z"
    )
    assert http_status(refused.value) == 402
    assert refused.value.details == {
        "budget": "tenant acme, daily, $5.00",
        "scope": "tenant",
        "period": "day",
        "key_id": None,
        "limit_usd": 5.0,
        "spent_usd": 4.98,
        "requested_usd": 0.05,
        "resets_at": "2026-12-03T00:00:00Z",
    }
    # Exactly up to the limit fits; one micro-dollar more does not.
    await guard.reserve("acme", "k1", Decimal("0.02"))
    with pytest.raises(BudgetExceeded):
        await guard.reserve("acme", "k1", Decimal("0.000001"))
    assert await _spent(guard, "acme") == [5_000_000]
    await guard.close()


async def test_day_and_month_windows(harness: Harness) -> None:
    await harness.budgets.set_budget("acme", "day", 1)
    await harness.budgets.set_budget("acme", "month", Decimal("1.5"))
    guard = harness.guard()
    await guard.reserve("acme", None, 1)
    with pytest.raises(BudgetExceeded, match=r"tenant acme, daily, \$1\.00"):
        await guard.reserve("acme", None, Decimal("0.01"))
    harness.clock.now = START + timedelta(hours=2)  # the next day, same month
    assert await _spent(guard, "acme") == [0, 1_000_000]
    with pytest.raises(BudgetExceeded) as refused:
        await guard.reserve("acme", None, Decimal("0.6"))
    assert "tenant acme, monthly, $1.50" in refused.value.message
    assert refused.value.message.endswith("it resets at 2027-01-01T00:00:00Z")
    await guard.reserve("acme", None, Decimal("0.5"))
    harness.clock.now = datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC)  # a new month
    assert await _spent(guard, "acme") == [0, 0]
    await guard.reserve("acme", None, 1)
    await guard.close()


async def test_tenant_and_key_budgets_and_all_or_nothing(harness: Harness) -> None:
    k1 = await add_key(harness.store, "acme")
    k2 = await add_key(harness.store, "acme")
    await harness.budgets.set_budget("acme", "day", 2)
    await harness.budgets.set_budget("acme", "day", 1, key_id=k1)
    guard = harness.guard()
    await guard.reserve("acme", k1, Decimal("0.6"))
    with pytest.raises(BudgetExceeded, match=f"budget 'key {k1} of tenant acme, daily"):
        await guard.reserve("acme", k1, Decimal("0.6"))
    await guard.reserve("acme", k2, 1)  # k2 has no budget of its own, only the tenant's
    assert await _spent(guard, "acme") == [1_600_000, 600_000]
    # The tenant refuses: the key's counter, which had room, must not move either.
    with pytest.raises(BudgetExceeded, match="budget 'tenant acme, daily"):
        await guard.reserve("acme", k1, Decimal("0.4") + Decimal("0.000001"))
    assert await _spent(guard, "acme") == [1_600_000, 600_000]
    assert await _spent(guard, "acme", k2) == [1_600_000]  # only budgets that apply
    # Other tenants are not affected, and a tenant without budgets is never refused.
    await harness.budgets.set_budget("globex", "day", 1)
    await guard.reserve("globex", None, 1)
    await guard.reserve("initech", None, 10**6)
    await guard.close()


async def test_settle_never_goes_negative_nor_revives_an_expired_window(
    harness: Harness,
) -> None:
    await harness.budgets.set_budget("acme", "day", 5)
    guard = harness.guard()
    first = await guard.reserve("acme", None, 1)
    await guard.reserve("acme", None, Decimal("0.5"))
    copy = Reservation.model_validate(first.model_dump())  # e.g. pickled across a handle
    await guard.settle(first, 0)
    await guard.settle(copy, 0)  # a double settle would go to -0.5
    assert await _spent(guard, "acme") == [0]
    late = await guard.reserve("acme", None, 1)
    harness.clock.now = START + timedelta(hours=1) + EXPIRY_GRACE + timedelta(seconds=1)
    if harness.kind == "redis":
        [key] = late.counters
        ttl_ms = await harness.redis.pttl(key)
        assert 0 < ttl_ms <= (timedelta(hours=1) + EXPIRY_GRACE).total_seconds() * 1000
        await harness.redis.delete(key)  # what expiry does at that time
    await guard.settle(late, Decimal("0.25"))
    # Redis reports the expired counter as missing (to seed), the process's as zero.
    assert await guard.backend.read(late.counters) == [None if harness.kind == "redis" else 0]
    if harness.kind == "redis":
        assert await harness.redis.exists(*late.counters) == 0
    await guard.close()


async def test_budget_changes_apply_within_the_cache_ttl(harness: Harness) -> None:
    elapsed = [0.0]
    guard = harness.guard(cache_ttl_s=1.0, cache_clock=lambda: elapsed[0])
    await guard.reserve("acme", None, 3)  # no budget yet: cached as none
    await harness.budgets.set_budget("acme", "day", 1)
    elapsed[0] += 0.99
    await guard.reserve("acme", None, 3)  # still within the cache TTL
    elapsed[0] += 0.02
    with pytest.raises(BudgetExceeded):
        await guard.reserve("acme", None, 3)
    await harness.budgets.delete_budget("acme", "day")
    guard.invalidate("acme")
    await guard.reserve("acme", None, 3)
    await guard.close()


async def _race(
    guards: list[BudgetGuard], calls: int, amount: Decimal
) -> tuple[list[Reservation], int]:
    results = await asyncio.gather(
        *(guards[i % len(guards)].reserve("acme", None, amount) for i in range(calls)),
        return_exceptions=True,
    )
    admitted = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(admitted) + len(refused) == calls, results
    return admitted, len(refused)


async def test_fifty_calls_race_for_the_last_dollar(harness: Harness) -> None:
    """5 guards (with Redis: 5 clients, like 5 replicas) send 50 reservations of $0.03 at
    once against the last $1.00 of $10: exactly 33 fit, and spend never passes the limit."""
    await harness.budgets.set_budget("acme", "day", 10)
    guards = [harness.guard() for _ in range(5)]
    await guards[0].settle(await guards[0].reserve("acme", None, 9), 9)
    reservation = Decimal("0.03")
    admitted, refused = await _race(guards, 50, reservation)
    assert (len(admitted), refused) == (33, 17)
    [reserved] = await _spent(guards[0], "acme")
    assert reserved == 9_990_000
    await asyncio.gather(
        *(g.settle(r, reservation) for g, r in zip(guards * 10, admitted, strict=False))
    )
    [spent] = await _spent(guards[0], "acme")
    overspend = max(0, spent - 10_000_000)
    assert (spent, overspend) == (9_990_000, 0)
    assert overspend <= 30_000  # the target: at most one call's reservation
    for guard in guards:
        await guard.close()


async def test_full_calls_racing_settle_exactly(harness: Harness) -> None:
    """Reserve, "call", settle below the reservation, all interleaved: the counter ends at
    exactly the sum of real costs and never passes the limit."""
    await harness.budgets.set_budget("acme", "day", 10)
    guards = [harness.guard() for _ in range(5)]
    await guards[0].settle(await guards[0].reserve("acme", None, 9), 9)
    rng = random.Random(7)
    costs: list[int] = []
    peaks: list[int] = []

    async def call(i: int) -> None:
        guard = guards[i % len(guards)]
        try:
            reservation = await guard.reserve("acme", "k", Decimal("0.05"))
        except BudgetExceeded:
            return
        [peak] = await _spent(guard, "acme")
        peaks.append(peak)
        await asyncio.sleep(rng.uniform(0, 0.01))  # a call's latency: shuffles the settles
        actual = rng.randint(10_000, 50_000)
        await guard.settle(reservation, Decimal(actual) / 1_000_000)
        costs.append(actual)

    await asyncio.gather(*(call(i) for i in range(50)))
    [spent] = await _spent(guards[0], "acme")
    assert spent == 9_000_000 + sum(costs)
    assert max(peaks) <= 10_000_000 and spent <= 10_000_000
    assert len(costs) >= 20  # at least the first $1.00 worth of reservations fit
    for guard in guards:
        await guard.close()


class Unreachable:
    """A spend backend that must not be touched."""

    async def reserve(self, *args: object) -> tuple[int, int]:
        raise AssertionError("budget-less calls must not touch the counters")

    adjust = read = reserve


async def test_calls_without_budget_never_touch_the_counters(tmp_path: Path) -> None:
    async with backend_settings("sqlite", tmp_path) as settings:
        store = await open_store(settings, ("acme",))
        try:
            guard = BudgetGuard(BudgetStore(store), Unreachable(), cache_ttl_s=0)  # type: ignore[arg-type]
            reservation = await guard.reserve("acme", "k", 100)
            await guard.settle(reservation, 1)
            assert reservation.counters == ()
        finally:
            await store.close()


async def test_redis_down_fails_closed_for_budgeted_calls(tmp_path: Path) -> None:
    async with backend_settings("sqlite", tmp_path) as settings:
        store = await open_store(settings, ("acme", "free"))
        dead = RedisSpend(make_redis_client("redis://127.0.0.1:1/0", timeout_s=0.3))
        guard = BudgetGuard(BudgetStore(store), dead, cache_ttl_s=0)
        try:
            await BudgetStore(store).set_budget("acme", "month", 50)
            with pytest.raises(DependencyUnavailable, match="Redis") as down:
                await guard.reserve("acme", None, 1)
            assert http_status(down.value) == 503
            with pytest.raises(DependencyUnavailable):
                await guard.status("acme")
            stale = Reservation(tenant_id="acme", key_id=None, amount_micro_usd=5, counters=("x",))
            with pytest.raises(DependencyUnavailable):
                await guard.settle(stale, 0)
            with pytest.raises(DependencyUnavailable):
                await guard.ping()
            await guard.reserve("free", None, 1)  # no budget: no Redis needed
        finally:
            await guard.close()
            await store.close()


async def test_build_picks_redis_or_warns_and_counts_in_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with backend_settings("sqlite", tmp_path) as settings:
        store = await open_store(settings)
        try:
            with caplog.at_level(logging.WARNING, logger="agent_runtime.tenancy.budgets"):
                local = build_budget_guard(LimitSettings(redis_url=None), BudgetSettings(), store)
            assert isinstance(local.backend, InMemorySpend)
            assert "AGENT_REDIS_URL is not set" in caplog.text
            shared = build_budget_guard(
                LimitSettings(redis_url=SecretStr(REDIS_URL)), BudgetSettings(), store
            )
            assert isinstance(shared.backend, RedisSpend)
            await shared.ping()
            await shared.close()
            await local.close()
        finally:
            await store.close()

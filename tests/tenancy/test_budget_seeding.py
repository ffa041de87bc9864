"""Budget counters lost by Redis (a restart, an eviction) are seeded from the usage ledger.

Real Redis (``AGENT_TEST_REDIS_URL``) and real databases (SQLite and the Postgres of
``tests/backends``); if either is down these tests fail. "A restart" here is deleting the
test's counters, which is what Redis without persistence does to all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from agent_runtime.config.settings import BudgetSettings, LimitSettings, StorageSettings
from agent_runtime.core.errors import BudgetExceeded, DependencyUnavailable, http_status
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.tenancy.budget_rows import BudgetStore
from agent_runtime.tenancy.budget_seed import LEDGER_UNREADABLE, SpendRecord, ledger_day
from agent_runtime.tenancy.budget_spend import Counter, InMemorySpend, RedisSpend
from agent_runtime.tenancy.budgets import COUNTERS_LOST, BudgetGuard, build_budget_guard
from agent_runtime.tenancy.usage import UsageEvent, UsageLedger
from tests.backends import isolated_postgres
from tests.tcp_proxy import TcpProxy, proxied_url
from tests.tenancy.budget_helpers import add_key, open_store
from tests.tenancy.redis_helpers import REDIS_URL, delete_prefix, new_client

START = datetime(2026, 12, 2, 23, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Env:
    store: MetadataStore
    budgets: BudgetStore
    ledger: UsageLedger
    prefix: str
    redis: Redis
    clock: Clock

    def guard(self, ledger: SpendRecord | None = None) -> BudgetGuard:
        return BudgetGuard(
            self.budgets,
            RedisSpend(new_client()),  # a client of its own, as a replica has
            ledger=ledger or self.ledger,
            cache_ttl_s=0,
            prefix=self.prefix,
            clock=self.clock,
        )

    async def record(self, tenant: str, key: str | None, usd: str, when: datetime) -> None:
        await self.ledger.record(
            UsageEvent(
                tenant_id=tenant, key_id=key, model="m", cost_usd=Decimal(usd), created_at=when
            )
        )

    async def restart_redis(self) -> None:
        await delete_prefix(self.redis, self.prefix)


@pytest.fixture
async def env(
    storage_settings: StorageSettings, redis_client: Redis, prefix: str
) -> AsyncIterator[Env]:
    store = await open_store(storage_settings, ("acme", "globex"))
    try:
        yield Env(store, BudgetStore(store), UsageLedger(store), prefix, redis_client, Clock())
    finally:
        await store.close()


async def _spent(guard: BudgetGuard, tenant: str, key: str | None = None) -> list[int]:
    return [s.spent_micro_usd for s in await guard.status(tenant, key)]


async def test_spend_survives_a_redis_restart(
    storage_settings: StorageSettings, redis_client: Redis, prefix: str
) -> None:
    """The regression: $9.99 of a $10/day budget spent, Redis restarts, and the next $0.05
    is refused (it was admitted, the window starting again at zero)."""
    store = await open_store(storage_settings, ("acme",))
    limits = LimitSettings(redis_url=SecretStr(REDIS_URL))
    guard = build_budget_guard(limits, BudgetSettings(budget_redis_prefix=prefix), store)
    ledger = UsageLedger(store)
    try:
        await BudgetStore(store).set_budget("acme", "day", 10)
        for cost in ("4", "4", "1.99"):  # what the router's observers do per call
            reservation = await guard.reserve("acme", "k1", Decimal(cost) + Decimal("0.01"))
            await guard.settle(reservation, Decimal(cost))
            event = UsageEvent(tenant_id="acme", key_id="k1", model="m", cost_usd=Decimal(cost))
            await ledger.record(event)
        assert await _spent(guard, "acme") == [9_990_000]
        await delete_prefix(redis_client, prefix)  # Redis restarted: every counter gone
        with pytest.raises(BudgetExceeded) as refused:
            await guard.reserve("acme", "k1", Decimal("0.05"))
        assert refused.value.details["spent_usd"] == 9.99
        await guard.reserve("acme", "k1", Decimal("0.01"))  # exactly up to the limit
        assert await _spent(guard, "acme") == [10_000_000]
    finally:
        await guard.close()
        await store.close()


class HeldLedger:
    """The ledger, read only once every reader of ``barrier`` has started a read (so that
    seedings really overlap), then after ``delay_s`` more."""

    def __init__(
        self, ledger: UsageLedger, barrier: asyncio.Barrier | None = None, delay_s: float = 0
    ) -> None:
        self._ledger = ledger
        self._barrier = barrier
        self._delay_s = delay_s
        self.reads = 0

    async def cost_micro_usd(self, tenant_id: str, **scope: Any) -> int:
        self.reads += 1
        if self._barrier is not None:
            await asyncio.wait_for(self._barrier.wait(), 5)
        await asyncio.sleep(self._delay_s)
        return await self._ledger.cost_micro_usd(tenant_id, **scope)


async def test_replicas_seeding_at_once_count_the_ledger_once(env: Env) -> None:
    await env.budgets.set_budget("acme", "day", 10)
    await env.record("acme", "k1", "3", START - timedelta(hours=1))
    # Both replicas read $3 from the ledger; A seeds and reserves first, then B seeds
    # (SET NX: kept A's counter, neither added to it nor overwrote it) and reserves.
    both = asyncio.Barrier(2)
    ledgers = [HeldLedger(env.ledger, both), HeldLedger(env.ledger, both, delay_s=0.3)]
    replicas = [env.guard(ledger) for ledger in ledgers]
    await asyncio.gather(*(g.reserve("acme", "k1", 1) for g in replicas))
    assert [ledger.reads for ledger in ledgers] == [1, 1]
    assert await _spent(replicas[0], "acme") == [5_000_000]  # $3 + two $1, not $3 twice
    # Within one replica, a burst of calls after a restart costs one ledger read (held
    # long enough for every call of the burst to find the counter missing).
    await env.restart_redis()
    burst = HeldLedger(env.ledger, delay_s=0.2)
    guard = env.guard(burst)
    await asyncio.gather(*(guard.reserve("acme", "k1", Decimal("0.05")) for _ in range(20)))
    assert burst.reads == 1
    assert await _spent(guard, "acme") == [4_000_000]  # $3 recorded (the $2 never was), $1
    for g in [*replicas, guard]:
        await g.close()


async def test_tenant_and_key_budgets_are_seeded_from_their_own_rows(env: Env) -> None:
    k1 = await add_key(env.store, "acme")
    k2 = await add_key(env.store, "acme")
    await env.budgets.set_budget("acme", "day", 10)
    await env.budgets.set_budget("acme", "month", 50)
    await env.budgets.set_budget("acme", "day", 2, key_id=k1)
    today, earlier = START - timedelta(hours=2), START - timedelta(days=1)
    await env.record("acme", k1, "1.5", today)
    await env.record("acme", k2, "3", today)
    await env.record("acme", None, "0.25", today)  # a call without a key: the tenant's
    await env.record("acme", k1, "4", earlier)  # this month, not today
    await env.record("globex", k1, "7", today)  # another tenant's rows never count
    guard = env.guard()
    # Seeded by status too (lost counters would otherwise show nothing spent).
    assert await _spent(guard, "acme", k1) == [4_750_000, 8_750_000, 1_500_000]
    await env.restart_redis()
    with pytest.raises(BudgetExceeded, match=f"budget 'key {k1} of tenant acme, daily"):
        await guard.reserve("acme", k1, Decimal("0.6"))  # $1.50 + $0.60 > $2
    await guard.reserve("acme", k1, Decimal("0.5"))
    await guard.reserve("acme", k2, Decimal("4.75"))  # the rest of the tenant's day
    with pytest.raises(BudgetExceeded, match="budget 'tenant acme, daily"):
        await guard.reserve("acme", k2, Decimal("0.000001"))
    assert await _spent(guard, "acme", k1) == [10_000_000, 14_000_000, 2_000_000]
    await guard.close()


async def test_the_seed_sums_exactly_the_counters_window(env: Env) -> None:
    await env.budgets.set_budget("acme", "day", 100)
    await env.budgets.set_budget("acme", "month", 1000)
    micro = timedelta(microseconds=1)
    day, month = datetime(2026, 12, 2, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    for usd, when in [
        ("1", day),  # the window's first instant: in
        ("2", day + timedelta(days=1) - micro),  # its last: in
        ("4", day - micro),  # the day before: the month's only
        ("8", month),  # the month's first instant
        ("16", month - micro),  # November: out
        ("32", datetime(2027, 1, 1, tzinfo=UTC)),  # January: out
    ]:
        await env.record("acme", "k", usd, when)
    guard = env.guard()
    assert await _spent(guard, "acme") == [3_000_000, 15_000_000]
    # A new day's counter is seeded too: with what the ledger already holds of that day
    # (here a call that ended after midnight), nothing before it.
    await env.record("acme", "k", "64", datetime(2026, 12, 3, 0, 0, 1, tzinfo=UTC))
    env.clock.now = datetime(2026, 12, 3, 0, 0, 2, tzinfo=UTC)
    await guard.reserve("acme", "k", 1)
    assert await _spent(guard, "acme") == [65_000_000, 16_000_000]  # month: live counter
    await env.restart_redis()
    assert await _spent(guard, "acme") == [64_000_000, 79_000_000]  # the $1 was never recorded
    await guard.close()


async def test_the_normal_path_is_one_round_trip(env: Env) -> None:
    k1 = await add_key(env.store, "acme")
    await env.budgets.set_budget("acme", "day", 10)
    await env.budgets.set_budget("acme", "month", 10, key_id=k1)
    client = new_client()
    commands: list[str] = []
    original = client.execute_command

    async def counting(*args: Any, **options: Any) -> Any:
        commands.append(str(args[0]))
        return await original(*args, **options)

    client.execute_command = counting  # type: ignore[method-assign]
    guard = BudgetGuard(
        env.budgets, RedisSpend(client), ledger=env.ledger, prefix=env.prefix, clock=env.clock
    )
    await guard.reserve("acme", k1, 1)  # seeds (and may load the scripts first)
    commands.clear()
    for _ in range(3):
        await guard.reserve("acme", k1, 1)
    assert commands == ["EVALSHA"] * 3
    await env.restart_redis()
    await guard.reserve("acme", k1, 1)
    assert commands[3:] == ["EVALSHA"] * 3  # reserve (missing), seed, reserve
    await guard.close()


class SeedsNothing(RedisSpend):
    """Redis losing every counter as soon as it is seeded (evicting, restarting)."""

    async def seed(self, counters: Sequence[Counter], values: Sequence[int]) -> None:
        return None


class NoLedger:
    async def cost_micro_usd(self, tenant_id: str, **scope: Any) -> int:
        raise AssertionError("the in-process counters must not be seeded")


async def test_counters_that_keep_vanishing_and_the_in_process_backend(env: Env) -> None:
    await env.budgets.set_budget("acme", "day", 10)
    guard = BudgetGuard(
        env.budgets, SeedsNothing(new_client()), ledger=env.ledger, prefix=env.prefix
    )
    with pytest.raises(DependencyUnavailable) as lost:
        await guard.reserve("acme", None, 1)
    assert (lost.value.message, http_status(lost.value)) == (COUNTERS_LOST, 503)
    await guard.close()
    # The process's own counters start at zero, as before: no ledger read.
    await env.record("acme", None, "9.5", START)
    local = BudgetGuard(env.budgets, InMemorySpend(env.clock), ledger=NoLedger(), clock=env.clock)
    await local.reserve("acme", None, 1)
    assert await _spent(local, "acme") == [1_000_000]
    await local.close()


async def test_an_unreachable_ledger_refuses_with_503(
    tmp_path: Path, redis_client: Redis, prefix: str
) -> None:
    async with isolated_postgres() as dsn:
        proxy = TcpProxy.to_url(dsn)
        settings = StorageSettings(
            data_dir=tmp_path, database_url=proxied_url(dsn, proxy), db_timeout_s=2.0
        )
        store = await open_store(settings, ("acme",))
        guard = BudgetGuard(
            BudgetStore(store),
            RedisSpend(new_client()),
            ledger=UsageLedger(store),
            cache_ttl_s=3600,  # the budgets stay known; only the ledger is out of reach
            prefix=prefix,
        )
        try:
            await BudgetStore(store).set_budget("acme", "day", 10)
            await guard.reserve("acme", None, 1)
            await delete_prefix(redis_client, prefix)
            proxy.down()
            with pytest.raises(DependencyUnavailable) as down:
                await guard.reserve("acme", None, 1)
            assert (down.value.message, http_status(down.value)) == (LEDGER_UNREADABLE, 503)
            proxy.up()
            assert await _spent(guard, "acme") == [0]  # the $1 reserved was never recorded
        finally:
            await guard.close()
            await store.close()
            proxy.close()


def test_a_window_must_be_whole_ledger_days() -> None:
    assert ledger_day(datetime(2026, 12, 1, tzinfo=UTC)) == date(2026, 12, 1).isoformat()
    with pytest.raises(ValueError, match="00:00 UTC"):
        ledger_day(datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC))

"""Budgets' spend is read for gauges after calls, off the request path and throttled."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.core.types import ChatRequest, TokenUsage
from agent_runtime.gateway.call_observer import CallPlan, CallReport
from agent_runtime.tenancy.budget_spend import InMemorySpend
from agent_runtime.tenancy.budget_watch import BudgetWatch
from agent_runtime.tenancy.budgets import BudgetGuard, BudgetStatus


class Guard:
    def __init__(self, fail: bool = False) -> None:
        self.reads: list[str] = []
        self.fail = fail

    async def status(self, tenant_id: str, key_id: str | None = None) -> list[BudgetStatus]:
        self.reads.append(tenant_id)
        if self.fail:
            raise DependencyUnavailable("budget backend (Redis) unreachable")
        return cast(list[BudgetStatus], [f"status of {tenant_id}"])


def plan(tenant: str | None) -> CallPlan:
    return CallPlan(ChatRequest(alias="fast", messages=[], tenant_id=tenant), "fast", False, ())


REPORT = CallReport("ok", "fake-fast", TokenUsage(), 1.0, ())


async def test_reads_once_per_interval_per_tenant_and_never_for_no_tenant() -> None:
    now = [100.0]
    seen: list[tuple[str, Sequence[Any]]] = []
    guard = Guard()
    watch = BudgetWatch(
        cast(BudgetGuard, guard),
        lambda tenant, statuses: seen.append((tenant, statuses)),
        interval_s=5.0,
        clock=lambda: now[0],
    )
    for tenant in ("a", "a", "b", None, "a"):
        await watch.after_call(plan(tenant), REPORT, None)
    await watch.drain()
    assert guard.reads == ["a", "b"]
    now[0] += 5.0
    await watch.after_call(plan("a"), REPORT, None)
    await watch.drain()
    assert guard.reads == ["a", "b", "a"]
    assert seen[0] == ("a", ["status of a"])


async def test_a_failed_read_is_not_raised() -> None:
    seen: list[str] = []
    watch = BudgetWatch(cast(BudgetGuard, Guard(fail=True)), lambda t, s: seen.append(t))
    await watch.after_call(plan("a"), REPORT, None)
    await watch.drain()
    assert seen == []


async def test_with_a_real_guard_and_no_budgets_nothing_is_reported() -> None:
    class NoBudgets:
        async def list_budgets(self, tenant_id: str) -> list[Any]:
            return []

    seen: list[str] = []
    guard = BudgetGuard(NoBudgets(), InMemorySpend())
    watch = BudgetWatch(guard, lambda t, s: seen.append(t))
    await watch.after_call(plan("a"), REPORT, None)
    await watch.drain()
    assert seen == []

"""The router's cost controls, as call observers: budgets before a call, the ledger after.

:class:`BudgetObserver` reserves a request's worst case (whole prompt plus the completion
bound the router sends, at the dearest model of its chain) against the tenant's and the
key's budgets before any provider is called, refusing with 402 when that would exceed
one, and settles to the real cost afterwards (nothing, when no provider answered). Every
request made for a tenant goes through it: graphs' calls carry their run's tenant and key
(``agent_runtime.core.identity``) and the gateway's carry the caller's, so no key bypasses budgets.

:class:`LedgerObserver` writes one usage row per request: tenant, key, thread, run, the
model that answered, tokens, latency, cost and outcome.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from agent_runtime.config.pricing import ModelPrice
from agent_runtime.gateway.call_observer import CallPlan, CallReport
from agent_runtime.tenancy.budgets import BudgetGuard, Reservation
from agent_runtime.tenancy.usage import UsageEvent, UsageLedger

logger = logging.getLogger(__name__)


class BudgetObserver:
    def __init__(
        self,
        guard: BudgetGuard,
        *,
        default_max_tokens: int,
        default_price: ModelPrice | None,
    ) -> None:
        self._guard = guard
        self._default_max_tokens = default_max_tokens
        self._default_price = default_price

    async def before_call(self, plan: CallPlan) -> Reservation | None:
        tenant_id = plan.request.tenant_id
        if tenant_id is None:
            # The runtime's own calls (health checks): no tenant, nobody's budget.
            return None
        worst = plan.worst_case_usd(self._default_max_tokens, self._default_price)
        if worst is None:
            # Unpriced with no default price: reserve nothing, but settle the real cost
            # (also nothing, as unpriced calls cost nothing in the ledger).
            worst = Decimal(0)
        return await self._guard.reserve(tenant_id, plan.request.key_id, worst)

    async def after_call(self, plan: CallPlan, report: CallReport, ticket: object) -> None:
        if not isinstance(ticket, Reservation):
            return
        await self._guard.settle(ticket, report.cost_usd or Decimal(0))


class LedgerObserver:
    def __init__(self, ledger: UsageLedger) -> None:
        self._ledger = ledger

    async def before_call(self, plan: CallPlan) -> None:
        return None

    async def after_call(self, plan: CallPlan, report: CallReport, ticket: object) -> None:
        request = plan.request
        if request.tenant_id is None:
            return
        tried = report.attempts[-1].model if report.attempts else None
        await self._ledger.record(
            UsageEvent(
                tenant_id=request.tenant_id,
                key_id=request.key_id,
                thread_id=request.thread_id,
                run_id=request.run_id,
                model=report.model or tried or plan.alias,
                alias=plan.alias,
                input_tokens=report.usage.input_tokens,
                output_tokens=report.usage.output_tokens,
                latency_ms=report.latency_ms,
                cost_usd=report.cost_usd or Decimal(0),
                outcome=report.outcome,
            )
        )

"""How much of their budgets tenants have spent, for gauges and the "nearly spent" alert.

:class:`BudgetWatch` is a call observer: after a request made for a tenant it reads that
tenant's budgets (:meth:`agent_runtime.tenancy.budgets.BudgetGuard.status`: one database read and
one Redis MGET) in a task of its own, at most once per ``interval_s`` per tenant, and hands
them to ``on_status``. The request never waits for it, and a failed read is logged once
per tenant and interval, never raised: gauges are not worth a failed call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from agent_runtime.core.errors import AgentRuntimeError
from agent_runtime.gateway.call_observer import CallPlan, CallReport
from agent_runtime.tenancy.budgets import BudgetGuard, BudgetStatus

logger = logging.getLogger(__name__)

StatusListener = Callable[[str, Sequence[BudgetStatus]], None]
DEFAULT_INTERVAL_S = 5.0


class BudgetWatch:
    def __init__(
        self,
        guard: BudgetGuard,
        on_status: StatusListener,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._guard = guard
        self._on_status = on_status
        self._interval_s = interval_s
        self._clock = clock
        self._next_read: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def before_call(self, plan: CallPlan) -> None:
        return None

    async def after_call(self, plan: CallPlan, report: CallReport, ticket: object) -> None:
        tenant_id = plan.request.tenant_id
        if tenant_id is None:
            return
        now = self._clock()
        if now < self._next_read.get(tenant_id, 0.0):
            return
        self._next_read[tenant_id] = now + self._interval_s
        task = asyncio.get_running_loop().create_task(self._read(tenant_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, tenant_id: str) -> None:
        try:
            statuses = await self._guard.status(tenant_id)
        except AgentRuntimeError as exc:
            logger.warning("budgets of tenant %s not read for metrics: %s", tenant_id, exc.message)
            return
        if statuses:
            self._on_status(tenant_id, statuses)

    async def drain(self) -> None:
        """Wait for the reads in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

"""Budget counters that Redis lost, seeded again from the usage ledger.

Redis keeps nothing across a restart, and may evict keys or lose the latest writes on a
failover; budget spend counters (:mod:`agent_runtime.tenancy.budget_spend`) would then start
again at zero, and a tenant that had spent its budget could spend it again. The durable
record of spend is the usage ledger (:class:`~agent_runtime.tenancy.usage.UsageLedger`,
one row per model call), so :class:`CounterSeeder` creates a missing counter at the
ledger's spend for the budget's scope (the tenant, or the tenant's key) within the
counter's own window, with ``SET NX``: two replicas seeding at once count the ledger once,
and one that finds the counter already there leaves it (and what was reserved in it since)
as it is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Protocol

from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.core.ttl_cache import TtlCache
from agent_runtime.tenancy.budget_rows import Budget
from agent_runtime.tenancy.budget_spend import Counter, SpendBackend

logger = logging.getLogger(__name__)

LEDGER_UNREADABLE = (
    "budget spend lost by Redis cannot be restored: the usage ledger (database) is "
    "unreachable, so calls under a budget are refused"
)


class SpendRecord(Protocol):
    """The durable record of spend (:class:`~agent_runtime.tenancy.usage.UsageLedger`)."""

    async def cost_micro_usd(
        self, tenant_id: str, *, key_id: str | None = None, since: date, before: date
    ) -> int: ...


class CounterSeeder:
    """Seeds a guard's missing counters in ``backend`` from ``ledger`` (None: at 0, as
    they started before; for tests and benchmarks without a ledger)."""

    def __init__(self, backend: SpendBackend, ledger: SpendRecord | None) -> None:
        self._backend = backend
        self._ledger = ledger
        # TTL 0, so nothing is cached: only concurrent seedings of one scope and window
        # (a burst of calls right after a restart) share one ledger query.
        self._sums: TtlCache[int] = TtlCache(self._sum, 0.0)

    async def seed(
        self,
        budgets: Sequence[Budget],
        windows: Sequence[tuple[datetime, datetime]],
        counters: Sequence[Counter],
        missing: Sequence[int],
    ) -> None:
        """Create counters ``missing`` (indices into the other three, which go together)
        at the ledger's spend in their windows; one that exists by then is kept."""
        values = []
        for i in missing:
            # Exactly the counter's window: the (start, reset) that named its key, as the
            # ledger's UTC days (usage_day), start included, reset excluded.
            start, reset = windows[i]
            scope = [budgets[i].tenant_id, budgets[i].key_id, ledger_day(start), ledger_day(reset)]
            values.append(await self._sums.get(json.dumps(scope)))
        await self._backend.seed([counters[i] for i in missing], values)

    async def _sum(self, scope_json: str) -> int:
        if self._ledger is None:
            return 0
        tenant_id, key_id, since, before = json.loads(scope_json)
        try:
            return await self._ledger.cost_micro_usd(
                tenant_id,
                key_id=key_id,
                since=date.fromisoformat(since),
                before=date.fromisoformat(before),
            )
        except DependencyUnavailable as exc:
            logger.warning("budget counters not seeded from the usage ledger: %s", exc.message)
            raise DependencyUnavailable(LEDGER_UNREADABLE) from exc


def ledger_day(boundary: datetime) -> str:
    """A window boundary as the ledger's UTC day; budget windows start at 00:00 UTC, and
    any other boundary would not match whole ledger days."""
    boundary = boundary.astimezone(UTC)
    if boundary != boundary.replace(hour=0, minute=0, second=0, microsecond=0):
        raise ValueError(f"a budget window must start and end at 00:00 UTC, not {boundary}")
    return boundary.date().isoformat()

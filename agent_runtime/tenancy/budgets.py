"""Spending budgets per tenant and per API key (USD per day or month), enforced before a call.

Two parts:

* :class:`~agent_runtime.tenancy.budget_rows.BudgetStore`: the budgets themselves, rows of
  ``agent_budgets`` in the metadata store (set, list, delete). A tenant budget limits
  every call of the tenant; a key budget limits the calls made with that key, on top of
  the tenant's. No key is exempt.
* :class:`BudgetGuard`: the spend counters, one per budget and window (the UTC day or
  month), in integer micro-dollars, in Redis
  (:class:`~agent_runtime.tenancy.budget_spend.RedisSpend`, shared by replicas) or in this process
  (:class:`~agent_runtime.tenancy.budget_spend.InMemorySpend`, single replica only).

The router's side (see also :mod:`agent_runtime.config.pricing`)::

    reservation = await guard.reserve(tenant_id, key_id, worst_case_usd)  # may raise 402
    try:
        result = await call_provider(...)
    except BaseException:
        await guard.release(reservation)      # nothing was spent (or settle what was)
        raise
    await guard.settle(reservation, cost(price, result.usage))

:meth:`BudgetGuard.reserve` checks every budget that applies (the tenant's and the key's,
each of its day and/or month windows) and adds the amount to all of their counters in ONE
atomic Lua call, all or nothing: if any counter's spend plus the amount would pass its
limit, nothing is added and :class:`BudgetExceeded` (402) names that budget and when it
resets. Concurrent reservations are therefore serialised by Redis and the reserved total
never passes a limit; spend can pass it only when a call's real cost is above its
reservation (settle records the truth). :meth:`BudgetGuard.settle` moves every counter by
``actual - reserved`` in one Lua call, never below zero, and only counters whose window
still exists. A reservation never settled (its replica died) stays counted at its worst
case until the window ends: that errs towards refusing.

Windows start at 00:00 UTC (day) or the 1st, 00:00 UTC (month), computed from this
replica's clock; a counter's key names its window start, and it expires at the window's
end plus :data:`EXPIRY_GRACE` (for clocks a little behind). Budgets are read from the
database and cached per replica for ``cache_ttl_s`` (``AGENT_BUDGET_CACHE_TTL_S``, 5 s by
default): a new, changed or deleted budget applies on every replica within that time.

Redis keeps nothing across a restart (nor what it evicts), so a counter may be missing:
the reservation then adds nothing, the missing counters are seeded from the usage ledger
(:mod:`~agent_runtime.tenancy.budget_seed`: the spend recorded in the counter's window,
``SET NX``) and the Lua call is made again, at most :data:`SEED_ATTEMPTS` times. A new
window's counters, and a new budget's, are seeded the same way, to the ledger's spend so
far in the window (usually 0). The normal path, counters present, stays one Lua call.
What the ledger cannot hold: the calls in flight when Redis lost the counters (a row is
written after the call settles: each such call's settle then takes its reservation off a
counter that never held it), and a call that straddles a window's start (counted in the
window it was reserved in, and also in the next one's seed when its row falls there).

Failure modes: a tenant with no budgets never touches Redis. Redis configured but
unreachable fails closed: a call that has a budget cannot be checked, so ``reserve``
raises :class:`DependencyUnavailable` (503), as do ``settle`` and ``status``. A database
that cannot be read (budgets on a cache miss, or the ledger for a missing counter) is also
:class:`DependencyUnavailable`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import quote

from pydantic import BaseModel, PrivateAttr

from agent_runtime.config.pricing import format_usd, from_micros, to_micros
from agent_runtime.config.settings import BudgetSettings, LimitSettings
from agent_runtime.core.errors import BudgetExceeded, DependencyUnavailable
from agent_runtime.core.ttl_cache import TtlCache
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.redis_client import make_redis_client
from agent_runtime.db.tables import utcnow
from agent_runtime.tenancy.budget_rows import Budget, BudgetPeriod, BudgetSource, BudgetStore
from agent_runtime.tenancy.budget_seed import CounterSeeder, SpendRecord
from agent_runtime.tenancy.budget_spend import Counter, InMemorySpend, RedisSpend, SpendBackend
from agent_runtime.tenancy.usage import UsageLedger

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "agent:budget:"
DEFAULT_CACHE_TTL_S = 5.0
# A counter outlives its window by this much, so that a replica whose clock is a little
# behind still adds to the live counter (a fresh one would expire at once).
EXPIRY_GRACE = timedelta(minutes=10)
# Seed-and-retry rounds of one reservation: a counter missing again right after it was
# seeded means Redis keeps losing keys (restarting, evicting), and the call is refused.
SEED_ATTEMPTS = 3
COUNTERS_LOST = (
    "budget spend counters keep disappearing from Redis: calls under a budget are refused"
)


# -- windows ----------------------------------------------------------------------------
def window_of(period: BudgetPeriod, now: datetime) -> tuple[datetime, datetime]:
    """(start, reset) of the UTC day or month holding ``now``."""
    now = now.astimezone(UTC)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if start.month == 12:
        return start, start.replace(year=start.year + 1, month=1)
    return start, start.replace(month=start.month + 1)


def iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the guard --------------------------------------------------------------------------
class Reservation(BaseModel):
    """What :meth:`BudgetGuard.reserve` holds for a call, until it is settled.

    ``counters`` are the Redis keys of the windows it was reserved in: settling after a
    window rolled over still adjusts the window the call was counted in. Picklable.
    """

    tenant_id: str
    key_id: str | None
    amount_micro_usd: int
    counters: tuple[str, ...] = ()
    budgets: tuple[str, ...] = ()  # the labels of the budgets it counts against
    _settled: bool = PrivateAttr(default=False)

    @property
    def amount_usd(self) -> Decimal:
        return from_micros(self.amount_micro_usd)


class BudgetStatus(BaseModel):
    """A budget with its current window's spend (reservations in flight included)."""

    budget: Budget
    window_start: datetime
    resets_at: datetime
    spent_micro_usd: int

    @property
    def remaining_micro_usd(self) -> int:
        return max(0, self.budget.limit_micro_usd - self.spent_micro_usd)


class BudgetGuard:
    """Reserves a call's worst-case cost against every budget that applies, then settles.

    ``source`` gives a tenant's budgets (:class:`BudgetStore`); ``backend`` keeps the
    counters (:class:`RedisSpend` or :class:`InMemorySpend`, which it owns and closes);
    ``ledger`` is where counters the backend lost are seeded from (None: they start again
    at 0, for tests and benchmarks without a ledger); ``clock`` (UTC now) decides the
    windows; ``cache_clock`` (monotonic seconds) when a cached list of budgets is read again.
    """

    def __init__(
        self,
        source: BudgetSource,
        backend: SpendBackend,
        *,
        ledger: SpendRecord | None = None,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], datetime] = utcnow,
        cache_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._backend = backend
        self._prefix = prefix
        self._clock = clock
        # Concurrent misses for one tenant share one query.
        self._cache: TtlCache[list[Budget]] = TtlCache(
            source.list_budgets, cache_ttl_s, clock=cache_clock
        )
        self._seeder = CounterSeeder(backend, ledger)

    @property
    def backend(self) -> SpendBackend:
        return self._backend

    async def reserve(
        self, tenant_id: str, key_id: str | None, amount_usd: Decimal | float | int
    ) -> Reservation:
        """Reserve ``amount_usd`` (rounded up to the micro-dollar) against the tenant's
        budgets and, with ``key_id``, that key's, atomically in one Lua call (counters
        Redis lost are seeded from the ledger first, then the call is made again).

        Raises :class:`BudgetExceeded` (402) naming the first budget it would exceed, its
        spend and reset time (``details``: budget, scope, period, key_id, limit_usd,
        spent_usd, requested_usd, resets_at); :class:`DependencyUnavailable` (503) when the
        budgets or the counters cannot be read. With no budget it returns an empty
        reservation without touching Redis.
        """
        amount = to_micros(amount_usd, round_up=True)
        if amount < 0:
            raise ValueError("a reservation cannot be negative")
        budgets = [b for b in await self._budgets(tenant_id) if b.applies_to(key_id)]
        if not budgets:
            return Reservation(tenant_id=tenant_id, key_id=key_id, amount_micro_usd=amount)
        now = self._clock()
        windows = [window_of(b.period, now) for b in budgets]
        counters = [self._counter(b, w, now) for b, w in zip(budgets, windows, strict=True)]
        reserved = await self._backend.reserve(counters, amount)
        for _ in range(SEED_ATTEMPTS):
            if not reserved.missing:
                break
            await self._seeder.seed(budgets, windows, counters, reserved.missing)
            reserved = await self._backend.reserve(counters, amount)
        if reserved.missing:
            raise DependencyUnavailable(COUNTERS_LOST)
        if reserved.refused:
            spent = reserved.spent
            budget, (_, reset) = budgets[reserved.refused - 1], windows[reserved.refused - 1]
            raise BudgetExceeded(
                f"budget '{budget.label}' would be exceeded (spent {format_usd(spent)}, "
                f"this call may cost up to {format_usd(amount)}); "
                f"it resets at {iso_z(reset)}",
                budget=budget.label,
                scope=budget.scope,
                period=budget.period,
                key_id=budget.key_id,
                limit_usd=float(budget.limit_usd),
                spent_usd=float(from_micros(spent)),
                requested_usd=float(from_micros(amount)),
                resets_at=iso_z(reset),
            )
        return Reservation(
            tenant_id=tenant_id,
            key_id=key_id,
            amount_micro_usd=amount,
            counters=tuple(c.key for c in counters),
            budgets=tuple(b.label for b in budgets),
        )

    async def settle(self, reservation: Reservation, actual_usd: Decimal | float | int) -> None:
        """Replace the reservation by the call's real cost (rounded half-even to the
        micro-dollar) in one Lua call; counters never go below zero. A second settle of
        the same reservation object does nothing."""
        if reservation._settled:
            return
        actual = to_micros(actual_usd)
        if actual < 0:
            raise ValueError("a cost cannot be negative")
        delta = actual - reservation.amount_micro_usd
        if reservation.counters and delta != 0:
            await self._backend.adjust(reservation.counters, delta)
        reservation._settled = True

    async def release(self, reservation: Reservation) -> None:
        """The call cost nothing (it never reached the provider): settle at zero."""
        await self.settle(reservation, 0)

    async def status(self, tenant_id: str, key_id: str | None = None) -> list[BudgetStatus]:
        """Every budget of the tenant (or only those applying to ``key_id``) with its
        current window's spend, read in one MGET (fresh from the database, not cached);
        counters Redis lost are seeded from the ledger first, as :meth:`reserve` does."""
        budgets = await self._source.list_budgets(tenant_id)
        if key_id is not None:
            budgets = [b for b in budgets if b.applies_to(key_id)]
        now = self._clock()
        windows = [window_of(b.period, now) for b in budgets]
        keys = [self._counter_key(b, w[0]) for b, w in zip(budgets, windows, strict=True)]
        read = await self._backend.read(keys)
        missing = tuple(i for i, value in enumerate(read) if value is None)
        if missing:
            counters = [self._counter(b, w, now) for b, w in zip(budgets, windows, strict=True)]
            await self._seeder.seed(budgets, windows, counters, missing)
            read = await self._backend.read(keys)
        spent = [value or 0 for value in read]  # lost again at once: shown as nothing spent
        return [
            BudgetStatus(budget=b, window_start=w[0], resets_at=w[1], spent_micro_usd=s)
            for b, w, s in zip(budgets, windows, spent, strict=True)
        ]

    def invalidate(self, tenant_id: str | None = None) -> None:
        """Forget cached budgets (of one tenant, or all) so the next call rereads them."""
        self._cache.invalidate(tenant_id)

    async def ping(self) -> None:
        await self._backend.ping()

    async def close(self) -> None:
        await self._backend.close()

    def _counter(self, budget: Budget, window: tuple[datetime, datetime], now: datetime) -> Counter:
        start, reset = window
        return Counter(
            key=self._counter_key(budget, start),
            limit_micro_usd=budget.limit_micro_usd,
            ttl_ms=max(1, int((reset + EXPIRY_GRACE - now).total_seconds() * 1000)),
        )

    def _counter_key(self, budget: Budget, window_start: datetime) -> str:
        # {tenant} is a hash tag: all of a call's counters live in one Cluster slot.
        tenant = quote(budget.tenant_id, safe="")
        key = quote(budget.key_id or "", safe="")
        return (
            f"{self._prefix}{{{tenant}}}:{budget.scope}:{key}:{budget.period}:"
            f"{window_start:%Y-%m-%d}"
        )

    async def _budgets(self, tenant_id: str) -> list[Budget]:
        return await self._cache.get(tenant_id)


def build_budget_guard(
    limits: LimitSettings, budgets: BudgetSettings, store: MetadataStore
) -> BudgetGuard:
    """Counters in the Redis of ``AGENT_REDIS_URL`` when set, else in process (with a
    warning); budgets from ``store`` (set up), cached ``AGENT_BUDGET_CACHE_TTL_S``; lost
    counters seeded from the usage ledger in ``store``."""
    url = limits.redis_url.get_secret_value() if limits.redis_url is not None else ""
    backend: SpendBackend
    if url:
        backend = RedisSpend(make_redis_client(url, limits.redis_timeout_s))
    else:
        logger.warning(
            "AGENT_REDIS_URL is not set: budget spend is counted per process, so each replica "
            "enforces budgets on its own. Set AGENT_REDIS_URL=redis://<host>:6379/0 to share it."
        )
        backend = InMemorySpend()
    return BudgetGuard(
        BudgetStore(store),
        backend,
        ledger=UsageLedger(store),
        cache_ttl_s=budgets.budget_cache_ttl_s,
        prefix=budgets.budget_redis_prefix,
    )

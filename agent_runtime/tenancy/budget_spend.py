"""Budget spend counters: where :class:`~agent_runtime.tenancy.budgets.BudgetGuard` keeps them.

One counter per budget and window, in integer micro-dollars: :class:`RedisSpend` (shared
by every replica; Lua scripts, one round trip each) or :class:`InMemorySpend` (this
process only, for a single replica). Both reserve all of a call's counters or none.

Redis keeps nothing across a restart (nor what it evicts), so :class:`RedisSpend` never
creates a counter at zero: a reservation that finds one missing adds nothing and names
it, and the guard seeds it (:meth:`SpendBackend.seed`, ``SET NX``) from the usage ledger
before reserving again. The in-process counters start at zero when first reserved, as a
new window's do (a restart of this process loses them with everything else it holds).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.db.tables import utcnow

REDIS_UNREACHABLE = "budget backend (Redis) unreachable: calls under a budget are refused"


@dataclass(frozen=True, slots=True)
class Counter:
    """One budget's counter in one window, as the spend backends see it."""

    key: str
    limit_micro_usd: int
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class Reserved:
    """What a backend's ``reserve`` did: added the amount to every counter (all fields at
    their defaults) or to none, because ``missing`` counters (0-based indices) do not
    exist, or else because counter ``refused`` (1-based) would pass its limit; ``spent``
    is that counter's spend."""

    refused: int = 0
    spent: int = 0
    missing: tuple[int, ...] = ()


# -- spend backends ---------------------------------------------------------------------
class SpendBackend(Protocol):
    async def reserve(self, counters: Sequence[Counter], amount: int) -> Reserved:
        """Add ``amount`` to every counter, or to none (see :class:`Reserved`)."""
        ...

    async def seed(self, counters: Sequence[Counter], values: Sequence[int]) -> None:
        """Create each counter that does not exist at its value (with its time to live);
        one that exists (another replica seeded it first) is left as it is."""
        ...

    async def adjust(self, keys: Sequence[str], delta: int) -> None:
        """Add ``delta`` (may be negative) to the counters that exist, flooring at 0."""
        ...

    async def read(self, keys: Sequence[str]) -> list[int | None]:
        """Each counter's spend; None for one that is missing and must be seeded."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


# KEYS: the counters (micro-USD). ARGV[1]: amount; ARGV[1+i]: KEYS[i]'s limit;
# ARGV[1+n+i]: KEYS[i]'s time to live (ms). All checked first, then all added: atomic.
# A missing counter is reported ({-1, 0, i...}), not taken as 0: Redis may have lost it.
_RESERVE_LUA = """
local amount = tonumber(ARGV[1])
local n = #KEYS
local values = redis.call('MGET', unpack(KEYS))
local missing = {-1, 0}
for i = 1, n do
  if not values[i] then
    missing[#missing + 1] = i
  end
end
if #missing > 2 then
  return missing
end
for i = 1, n do
  local spent = tonumber(values[i])
  if spent + amount > tonumber(ARGV[1 + i]) then
    return {i, spent}
  end
end
for i = 1, n do
  redis.call('INCRBY', KEYS[i], amount)
  redis.call('PEXPIRE', KEYS[i], ARGV[1 + n + i])
end
return {0, 0}
"""

# KEYS: the counters of a reservation. ARGV[1]: actual - reserved (micro-USD).
# A counter whose window has expired is left absent; none goes below zero.
_SETTLE_LUA = """
local delta = tonumber(ARGV[1])
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    if redis.call('INCRBY', KEYS[i], delta) < 0 then
      redis.call('SET', KEYS[i], 0, 'KEEPTTL')
    end
  end
end
return 0
"""

# KEYS: counters to create. ARGV[i]: KEYS[i]'s value; ARGV[n+i]: its time to live (ms).
_SEED_LUA = """
local n = #KEYS
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[i], 'NX', 'PX', ARGV[n + i])
end
return 0
"""


@contextmanager
def _redis_errors() -> Iterator[None]:
    try:
        yield
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, TimeoutError) as exc:
        raise DependencyUnavailable(REDIS_UNREACHABLE) from exc


class RedisSpend:
    """Counters as Redis integers, changed only by the Lua scripts (EVALSHA, one round
    trip each). Takes ownership of ``redis``: :meth:`close` closes it. A call's keys share
    the tenant's hash tag, so the scripts also run on Redis Cluster."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._reserve = redis.register_script(_RESERVE_LUA)
        self._settle = redis.register_script(_SETTLE_LUA)
        self._seed = redis.register_script(_SEED_LUA)

    async def reserve(self, counters: Sequence[Counter], amount: int) -> Reserved:
        args = [amount, *(c.limit_micro_usd for c in counters), *(c.ttl_ms for c in counters)]
        with _redis_errors():
            reply = await self._reserve(keys=[c.key for c in counters], args=args)
        if int(reply[0]) == -1:
            return Reserved(missing=tuple(int(i) - 1 for i in reply[2:]))
        return Reserved(refused=int(reply[0]), spent=int(reply[1]))

    async def seed(self, counters: Sequence[Counter], values: Sequence[int]) -> None:
        if not counters:
            return
        args = [*values, *(c.ttl_ms for c in counters)]
        with _redis_errors():
            await self._seed(keys=[c.key for c in counters], args=args)

    async def adjust(self, keys: Sequence[str], delta: int) -> None:
        with _redis_errors():
            await self._settle(keys=list(keys), args=[delta])

    async def read(self, keys: Sequence[str]) -> list[int | None]:
        if not keys:
            return []
        with _redis_errors():
            values = await self._redis.mget(list(keys))
        return [int(v) if v is not None else None for v in values]

    async def ping(self) -> None:
        with _redis_errors():
            await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


class InMemorySpend:
    """The same counters and semantics in this process only: each replica then enforces
    its own budgets, so N replicas can together spend up to N times a limit.

    No method awaits between reading and writing, so each is atomic on the event loop.
    """

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock
        self._counters: dict[str, tuple[int, datetime]] = {}
        self._last_sweep = clock()

    def _live(self, key: str, now: datetime) -> tuple[int, datetime] | None:
        entry = self._counters.get(key)
        if entry is not None and entry[1] <= now:
            del self._counters[key]
            return None
        return entry

    async def reserve(self, counters: Sequence[Counter], amount: int) -> Reserved:
        now = self._clock()
        self._sweep(now)
        for index, counter in enumerate(counters, start=1):
            entry = self._live(counter.key, now)
            spent = entry[0] if entry else 0
            if spent + amount > counter.limit_micro_usd:
                return Reserved(refused=index, spent=spent)
        for counter in counters:
            entry = self._live(counter.key, now)
            expires = now + timedelta(milliseconds=counter.ttl_ms)
            self._counters[counter.key] = ((entry[0] if entry else 0) + amount, expires)
        return Reserved()

    async def seed(self, counters: Sequence[Counter], values: Sequence[int]) -> None:
        # Never asked to by the guard (reserve reports nothing missing); kept for the protocol.
        now = self._clock()
        for counter, value in zip(counters, values, strict=True):
            if self._live(counter.key, now) is None:
                expires = now + timedelta(milliseconds=counter.ttl_ms)
                self._counters[counter.key] = (value, expires)

    async def adjust(self, keys: Sequence[str], delta: int) -> None:
        now = self._clock()
        for key in keys:
            entry = self._live(key, now)
            if entry is not None:
                self._counters[key] = (max(0, entry[0] + delta), entry[1])

    async def read(self, keys: Sequence[str]) -> list[int | None]:
        now = self._clock()
        return [entry[0] if (entry := self._live(key, now)) else 0 for key in keys]

    def _sweep(self, now: datetime) -> None:
        if now - self._last_sweep < timedelta(minutes=1):
            return
        self._last_sweep = now
        for key in [k for k, (_, expires) in self._counters.items() if expires <= now]:
            del self._counters[key]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._counters.clear()

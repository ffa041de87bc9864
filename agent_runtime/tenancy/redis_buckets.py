"""Token buckets in Redis, shared by every replica: one hash per key, one Lua script per call.

A bucket holds ``burst`` tokens refilled at ``rate_per_s``; the script refills it by the
server's clock, takes the cost or refuses, and lets the key expire once the bucket would be
full again. A Redis that cannot be reached is :class:`DependencyUnavailable`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.tenancy.rate_limiter import (
    LimitDecision,
    bucket_params,
    check_cost,
    check_params,
)

DEFAULT_PREFIX = "agent:rl:"
REDIS_UNREACHABLE = "rate limiter backend (Redis) unreachable"


# KEYS[1]: the bucket hash {tokens, ts}. ARGV: rate (tokens/s), burst, cost, force (0/1:
# apply cost, which may be negative, without refusing; tokens stay in [-burst, burst]).
# Returns {allowed (0/1), remaining (whole tokens), retry_after_ms, reset_ms}.
# Time comes from the server (TIME) so every replica sees one clock.
_TOKEN_BUCKET_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1]) / 1000
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local force = tonumber(ARGV[4] or '0')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
else
  -- max(0, ..): a clock step back (failover) must not drain the bucket
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
end
local allowed = 0
local retry_ms = 0
if force == 1 then
  tokens = math.max(-burst, math.min(burst, tokens - cost))
  allowed = 1
elseif tokens + 1e-9 >= cost then
  tokens = math.max(0, tokens - cost)
  allowed = 1
else
  retry_ms = math.ceil((cost - tokens) / rate)
end
local reset_ms = math.max(1, math.ceil((burst - tokens) / rate))
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'ts', string.format('%.17g', now))
-- the key lives until the bucket would be full again: idle keys vanish
redis.call('PEXPIRE', KEYS[1], reset_ms)
return {allowed, math.max(0, math.floor(tokens + 1e-9)), retry_ms, reset_ms}
"""


@contextmanager
def _redis_errors() -> Iterator[None]:
    try:
        yield
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, TimeoutError) as exc:
        raise DependencyUnavailable(REDIS_UNREACHABLE) from exc


class RedisTokenBucket:
    """Token buckets in Redis, one hash per key, updated by one Lua script per hit.

    Takes ownership of ``redis``: :meth:`close` closes it.
    """

    def __init__(
        self, redis: Redis, rate_per_s: float, burst: int, prefix: str = DEFAULT_PREFIX
    ) -> None:
        check_params(rate_per_s, burst)
        self._redis = redis
        self._rate = float(rate_per_s)
        self._burst = burst
        self._prefix = prefix
        # EVALSHA, falling back to loading the script if the server does not know it.
        self._script = redis.register_script(_TOKEN_BUCKET_LUA)

    async def hit(
        self,
        key: str,
        cost: int = 1,
        *,
        rate_per_s: float | None = None,
        burst: int | None = None,
    ) -> LimitDecision:
        rate, size = bucket_params(self._rate, self._burst, rate_per_s, burst)
        check_cost(cost, size)
        return await self._run(key, rate, size, cost, force=False)

    async def adjust(
        self, key: str, tokens: int, *, rate_per_s: float | None = None, burst: int | None = None
    ) -> None:
        rate, size = bucket_params(self._rate, self._burst, rate_per_s, burst)
        if tokens:
            await self._run(key, rate, size, -tokens, force=True)

    async def _run(self, key: str, rate: float, size: int, cost: int, force: bool) -> LimitDecision:
        with _redis_errors():
            reply = await self._script(
                keys=[self._prefix + key], args=[repr(float(rate)), size, cost, int(force)]
            )
        allowed, remaining, retry_ms, reset_ms = (int(value) for value in reply)
        return LimitDecision(
            allowed=bool(allowed),
            limit=size,
            remaining=remaining,
            retry_after_s=retry_ms / 1000,
            reset_after_s=reset_ms / 1000,
        )

    async def ping(self) -> None:
        with _redis_errors():
            await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()

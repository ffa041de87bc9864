"""Per-key request limits: a token bucket, in Redis (shared by replicas) or in process.

Each key has a bucket of ``burst`` tokens refilled at ``rate_per_s``; a request takes
``cost`` tokens or is refused with the time until it could succeed. Limiters return a
:class:`LimitDecision`; the caller raises :class:`RateLimited` (see
:meth:`LimitDecision.raise_if_refused`) and sends :meth:`LimitDecision.headers`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from runtime.errors import DependencyUnavailable, RateLimited
from runtime.settings import LimitSettings

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "agent:rl:"
# Per replica: one EVALSHA takes well under a millisecond, so this serves thousands of hits/s.
REDIS_MAX_CONNECTIONS = 64
REDIS_UNREACHABLE = "rate limiter backend (Redis) unreachable"
# Float slack so that a refill landing a hair under a whole token still counts as one.
_EPSILON = 1e-9


class LimitDecision(BaseModel):
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: float
    reset_after_s: float

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` headers, plus ``Retry-After`` when refused (whole seconds, up)."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_after_s)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self._retry_after_header())
        return headers

    def raise_if_refused(self) -> None:
        if not self.allowed:
            seconds = self._retry_after_header()
            raise RateLimited(
                f"rate limit exceeded: {self.limit} requests burst; retry in {seconds}s",
                retry_after=seconds,
            )

    def _retry_after_header(self) -> int:
        return max(1, math.ceil(self.retry_after_s))


class RateLimiter(Protocol):
    async def hit(self, key: str, cost: int = 1) -> LimitDecision: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def _check_params(rate_per_s: float, burst: int) -> None:
    if rate_per_s <= 0 or burst < 1:
        raise ValueError("a token bucket needs rate_per_s > 0 and burst >= 1")


def _check_cost(cost: int, burst: int) -> None:
    # A cost above the bucket size could never be served: that is a caller bug.
    if not 1 <= cost <= burst:
        raise ValueError(f"cost must be between 1 and the bucket size ({burst}), got {cost}")


# KEYS[1]: the bucket hash {tokens, ts}. ARGV: rate (tokens/s), burst, cost.
# Returns {allowed (0/1), remaining (whole tokens), retry_after_ms, reset_ms}.
# Time comes from the server (TIME) so every replica sees one clock.
_TOKEN_BUCKET_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1]) / 1000
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
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
if tokens + 1e-9 >= cost then
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
return {allowed, math.floor(tokens + 1e-9), retry_ms, reset_ms}
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
        _check_params(rate_per_s, burst)
        self._redis = redis
        self._rate_arg = repr(float(rate_per_s))
        self._burst = burst
        self._prefix = prefix
        # EVALSHA, falling back to loading the script if the server does not know it.
        self._script = redis.register_script(_TOKEN_BUCKET_LUA)

    async def hit(self, key: str, cost: int = 1) -> LimitDecision:
        _check_cost(cost, self._burst)
        with _redis_errors():
            reply = await self._script(
                keys=[self._prefix + key], args=[self._rate_arg, self._burst, cost]
            )
        allowed, remaining, retry_ms, reset_ms = (int(value) for value in reply)
        return LimitDecision(
            allowed=bool(allowed),
            limit=self._burst,
            remaining=remaining,
            retry_after_s=retry_ms / 1000,
            reset_after_s=reset_ms / 1000,
        )

    async def ping(self) -> None:
        with _redis_errors():
            await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_at: float


class InMemoryTokenBucket:
    """The same buckets in this process only (each replica then has its own).

    ``hit`` never awaits between reading and writing a bucket, so it is atomic on the
    event loop without a lock.
    """

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        _check_params(rate_per_s, burst)
        self._rate = rate_per_s
        self._burst = burst
        self._clock = clock
        self._full_after_s = burst / rate_per_s
        self._buckets: dict[str, _Bucket] = {}
        self._last_sweep = clock()

    @property
    def tracked_keys(self) -> int:
        return len(self._buckets)

    async def hit(self, key: str, cost: int = 1) -> LimitDecision:
        _check_cost(cost, self._burst)
        now = self._clock()
        self._sweep(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            tokens = float(self._burst)
        else:
            elapsed = max(0.0, now - bucket.updated_at)
            tokens = min(float(self._burst), bucket.tokens + elapsed * self._rate)
        allowed = tokens + _EPSILON >= cost
        retry_after_s = 0.0
        if allowed:
            tokens = max(0.0, tokens - cost)
        else:
            retry_after_s = (cost - tokens) / self._rate
        self._buckets[key] = _Bucket(tokens=tokens, updated_at=now)
        return LimitDecision(
            allowed=allowed,
            limit=self._burst,
            remaining=math.floor(tokens + _EPSILON),
            retry_after_s=retry_after_s,
            reset_after_s=(self._burst - tokens) / self._rate,
        )

    def _sweep(self, now: float) -> None:
        # A bucket untouched for a full refill period is full, i.e. the same as absent.
        # Sweeping at most once per such period keeps the cost amortised O(1) per hit.
        if now - self._last_sweep < self._full_after_s:
            return
        self._last_sweep = now
        horizon = now - self._full_after_s
        for key in [k for k, b in self._buckets.items() if b.updated_at <= horizon]:
            del self._buckets[key]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._buckets.clear()


def build_limiter(settings: LimitSettings) -> RateLimiter:
    """Redis buckets when ``AGENT_REDIS_URL`` is set, else in-process ones (with a warning)."""
    url = settings.redis_url.get_secret_value() if settings.redis_url is not None else ""
    if not url:
        logger.warning(
            "AGENT_REDIS_URL is not set: rate limits are kept per process, so each replica "
            "enforces its own buckets. Set AGENT_REDIS_URL=redis://<host>:6379/0 to share them."
        )
        return InMemoryTokenBucket(settings.rate_limit_per_second, settings.rate_limit_burst)
    client = make_redis_client(url, settings.redis_timeout_s)
    return RedisTokenBucket(client, settings.rate_limit_per_second, settings.rate_limit_burst)


def make_redis_client(url: str, timeout_s: float) -> Redis:
    """A Redis client whose every wait (connect, reply, free connection) is bounded."""
    pool = BlockingConnectionPool.from_url(
        url,
        # Bounded, and a burst of requests queues for a free connection (up to timeout_s)
        # instead of failing as the default pool does past its limit.
        max_connections=REDIS_MAX_CONNECTIONS,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        # One quick retry covers a pooled connection the server closed; more would hold
        # every request for seconds while Redis is down.
        retry=Retry(NoBackoff(), retries=1),
    )
    return Redis.from_pool(pool)

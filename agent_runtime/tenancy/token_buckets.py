"""Token buckets, in Redis (shared by replicas) or in process, and what to do when Redis is away.

Each key has a bucket of ``burst`` tokens refilled at ``rate_per_s`` (a limiter's defaults,
or given per call: a tenant's own limits); a hit takes ``cost`` tokens or is refused with
the time until it could succeed; :meth:`RateLimiter.adjust` gives tokens back or takes
more without refusing (settling a reservation: a bucket may go into debt, down to
``-burst``). Every operation is one Lua script in Redis: one round trip. Limiters return a
:class:`LimitDecision`; the caller raises :class:`RateLimited` when it is refused and
sends :meth:`LimitDecision.headers`.

:class:`FailoverLimiter` is what :func:`build_limiter` returns when Redis is configured:
when Redis cannot be reached it either keeps limiting with in-process buckets (each
replica on its own: ``fail_open``) or refuses with 503 (``fail_closed``), logs the change
once each way, reports every such decision to a callback (a metric), and skips Redis for
``retry_s`` after a failure so that a dead Redis does not add its timeout to every request.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from agent_runtime.config.settings import LimitSettings
from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.db.redis_client import make_redis_client

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "agent:rl:"
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

    def _retry_after_header(self) -> int:
        return max(1, math.ceil(self.retry_after_s))


FailureMode = Literal["fail_open", "fail_closed"]
# Called once per decision taken without Redis: (limit name, failure mode).
UnavailableHook = Callable[[str, str], None]


class RateLimiter(Protocol):
    async def hit(
        self,
        key: str,
        cost: int = 1,
        *,
        rate_per_s: float | None = None,
        burst: int | None = None,
    ) -> LimitDecision:
        """Take ``cost`` tokens or refuse; ``rate_per_s``/``burst`` override the defaults."""
        ...

    async def adjust(
        self, key: str, tokens: int, *, rate_per_s: float | None = None, burst: int | None = None
    ) -> None:
        """Give ``tokens`` back (> 0) or take ``-tokens`` more (< 0), never refusing."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def _check_params(rate_per_s: float, burst: int) -> None:
    if rate_per_s <= 0 or burst < 1:
        raise ValueError("a token bucket needs rate_per_s > 0 and burst >= 1")


def _bucket(
    default_rate: float, default_burst: int, rate_per_s: float | None, burst: int | None
) -> tuple[float, int]:
    """A call's bucket: its own rate and size where given, the limiter's otherwise."""
    rate, size = default_rate if rate_per_s is None else rate_per_s, burst or default_burst
    _check_params(rate, size)
    return rate, size


def _check_cost(cost: int, burst: int) -> None:
    # A cost above the bucket size could never be served: that is a caller bug.
    if not 1 <= cost <= burst:
        raise ValueError(f"cost must be between 1 and the bucket size ({burst}), got {cost}")


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
        _check_params(rate_per_s, burst)
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
        rate, size = _bucket(self._rate, self._burst, rate_per_s, burst)
        _check_cost(cost, size)
        return await self._run(key, rate, size, cost, force=False)

    async def adjust(
        self, key: str, tokens: int, *, rate_per_s: float | None = None, burst: int | None = None
    ) -> None:
        rate, size = _bucket(self._rate, self._burst, rate_per_s, burst)
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


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_at: float
    full_at: float  # when it will have refilled to its burst (and can be forgotten)


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

    async def hit(
        self,
        key: str,
        cost: int = 1,
        *,
        rate_per_s: float | None = None,
        burst: int | None = None,
    ) -> LimitDecision:
        rate, size = _bucket(self._rate, self._burst, rate_per_s, burst)
        _check_cost(cost, size)
        return self._apply(key, rate, size, cost, force=False)

    async def adjust(
        self, key: str, tokens: int, *, rate_per_s: float | None = None, burst: int | None = None
    ) -> None:
        rate, size = _bucket(self._rate, self._burst, rate_per_s, burst)
        if tokens:
            self._apply(key, rate, size, -tokens, force=True)

    def _apply(self, key: str, rate: float, size: int, cost: int, force: bool) -> LimitDecision:
        now = self._clock()
        self._sweep(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            tokens = float(size)
        else:
            elapsed = max(0.0, now - bucket.updated_at)
            tokens = min(float(size), bucket.tokens + elapsed * rate)
        retry_after_s = 0.0
        if force:
            tokens = max(-float(size), min(float(size), tokens - cost))
            allowed = True
        elif tokens + _EPSILON >= cost:
            tokens = max(0.0, tokens - cost)
            allowed = True
        else:
            allowed = False
            retry_after_s = (cost - tokens) / rate
        reset_after_s = (size - tokens) / rate
        self._buckets[key] = _Bucket(tokens=tokens, updated_at=now, full_at=now + reset_after_s)
        return LimitDecision(
            allowed=allowed,
            limit=size,
            remaining=max(0, math.floor(tokens + _EPSILON)),
            retry_after_s=retry_after_s,
            reset_after_s=reset_after_s,
        )

    def _sweep(self, now: float) -> None:
        # A bucket past its full_at is full, i.e. the same as absent. Sweeping at most once
        # per default refill period keeps the cost amortised O(1) per hit.
        if now - self._last_sweep < self._full_after_s:
            return
        self._last_sweep = now
        for key in [k for k, b in self._buckets.items() if b.full_at <= now]:
            del self._buckets[key]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._buckets.clear()


class FailoverLimiter:
    """Buckets in Redis, and a documented behaviour while Redis cannot be reached.

    ``fail_open``: decisions come from ``fallback`` (in-process buckets of the same sizes),
    so each replica still limits on its own (N replicas admit up to N times a limit) and
    nothing is refused because Redis is away. ``fail_closed``: every decision is a
    :class:`DependencyUnavailable` (503, ``Retry-After``). Either way the first failure is
    logged (the error's type only: no address), every decision taken without Redis calls
    ``on_unavailable(name, mode)``, and Redis is not tried again for ``retry_s``; the first
    success after that logs the recovery. Owns both limiters.
    """

    def __init__(
        self,
        primary: RateLimiter,
        fallback: RateLimiter,
        mode: FailureMode,
        *,
        name: str,
        retry_s: float = 1.0,
        on_unavailable: UnavailableHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.mode: FailureMode = mode
        self.name = name
        self._retry_s = retry_s
        self._on_unavailable = on_unavailable
        self._clock = clock
        self._down_until: float | None = None  # None: Redis answered last time

    @property
    def degraded(self) -> bool:
        """Whether the last attempt to reach Redis failed."""
        return self._down_until is not None

    async def hit(
        self,
        key: str,
        cost: int = 1,
        *,
        rate_per_s: float | None = None,
        burst: int | None = None,
    ) -> LimitDecision:
        if not self._skip_redis():
            try:
                decision = await self.primary.hit(key, cost, rate_per_s=rate_per_s, burst=burst)
            except DependencyUnavailable as exc:
                self._failed(exc)
            else:
                self._answered()
                return decision
        self._report()
        return await self.fallback.hit(key, cost, rate_per_s=rate_per_s, burst=burst)

    async def adjust(
        self, key: str, tokens: int, *, rate_per_s: float | None = None, burst: int | None = None
    ) -> None:
        if not self._skip_redis():
            try:
                await self.primary.adjust(key, tokens, rate_per_s=rate_per_s, burst=burst)
            except DependencyUnavailable as exc:
                self._failed(exc)
            else:
                self._answered()
                return
        if self.mode == "fail_open":
            # Settling never refuses; fail_closed has nothing local to settle against.
            await self.fallback.adjust(key, tokens, rate_per_s=rate_per_s, burst=burst)

    async def ping(self) -> None:
        await self.primary.ping()

    async def close(self) -> None:
        await self.primary.close()
        await self.fallback.close()

    def _skip_redis(self) -> bool:
        return self._down_until is not None and self._clock() < self._down_until

    def _failed(self, exc: DependencyUnavailable) -> None:
        if self._down_until is None:
            cause = type(exc.__cause__ or exc).__name__
            what = (
                "limits are kept per replica until it answers"
                if self.mode == "fail_open"
                else "requests are refused with 503 until it answers"
            )
            logger.warning(
                "%s limiter: Redis unreachable (%s); %s: %s", self.name, cause, self.mode, what
            )
        self._down_until = self._clock() + self._retry_s

    def _answered(self) -> None:
        if self._down_until is not None:
            logger.warning("%s limiter: Redis answers again; limits are shared again", self.name)
            self._down_until = None

    def _report(self) -> None:
        if self._on_unavailable is not None:
            self._on_unavailable(self.name, self.mode)
        if self.mode == "fail_closed":
            raise DependencyUnavailable(
                f"{REDIS_UNREACHABLE}: the {self.name} limit cannot be checked "
                "(AGENT_RATE_LIMIT_FAILURE_MODE=fail_closed)",
                limit=self.name,
                retry_after=max(1.0, self._retry_s),
            )


def build_limiter(
    settings: LimitSettings,
    *,
    name: str = "requests_per_key",
    prefix: str = DEFAULT_PREFIX,
    rate_per_s: float | None = None,
    burst: int | None = None,
    on_unavailable: UnavailableHook | None = None,
) -> RateLimiter:
    """Redis buckets when ``AGENT_REDIS_URL`` is set (in a :class:`FailoverLimiter` that
    applies ``AGENT_RATE_LIMIT_FAILURE_MODE``), else in-process ones (with a warning).

    ``rate_per_s`` / ``burst`` default to the per-key request settings; hits may override
    them per call."""
    rate = settings.rate_limit_per_second if rate_per_s is None else rate_per_s
    size = settings.rate_limit_burst if burst is None else burst
    url = settings.redis_url.get_secret_value() if settings.redis_url is not None else ""
    if not url:
        logger.warning(
            "AGENT_REDIS_URL is not set: rate limits are kept per process, so each replica "
            "enforces its own buckets. Set AGENT_REDIS_URL=redis://<host>:6379/0 to share them."
        )
        return InMemoryTokenBucket(rate, size)
    client = make_redis_client(url, settings.redis_timeout_s)
    return FailoverLimiter(
        RedisTokenBucket(client, rate, size, prefix=prefix),
        InMemoryTokenBucket(rate, size),
        settings.rate_limit_failure_mode,
        name=name,
        retry_s=settings.rate_limit_redis_retry_s,
        on_unavailable=on_unavailable,
    )

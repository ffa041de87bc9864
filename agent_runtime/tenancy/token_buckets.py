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

The buckets themselves are :class:`agent_runtime.tenancy.redis_buckets.RedisTokenBucket` and
:class:`agent_runtime.tenancy.memory_buckets.InMemoryTokenBucket`, both
:class:`agent_runtime.tenancy.rate_limiter.RateLimiter` s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from agent_runtime.config.settings import LimitSettings
from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.db.redis_client import make_redis_client
from agent_runtime.tenancy.memory_buckets import InMemoryTokenBucket
from agent_runtime.tenancy.rate_limiter import (
    FailureMode,
    LimitDecision,
    RateLimiter,
    UnavailableHook,
)
from agent_runtime.tenancy.redis_buckets import DEFAULT_PREFIX, REDIS_UNREACHABLE, RedisTokenBucket

logger = logging.getLogger(__name__)


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

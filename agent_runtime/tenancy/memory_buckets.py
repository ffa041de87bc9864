"""Token buckets in this process only: each replica keeps its own.

What :func:`agent_runtime.tenancy.token_buckets.build_limiter` uses without Redis, and what
:class:`agent_runtime.tenancy.token_buckets.FailoverLimiter` falls back to (``fail_open``)
while Redis is away. Buckets that have refilled are forgotten.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent_runtime.tenancy.rate_limiter import (
    LimitDecision,
    bucket_params,
    check_cost,
    check_params,
)

# Float slack so that a refill landing a hair under a whole token still counts as one.
_EPSILON = 1e-9


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
        check_params(rate_per_s, burst)
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
        rate, size = bucket_params(self._rate, self._burst, rate_per_s, burst)
        check_cost(cost, size)
        return self._apply(key, rate, size, cost, force=False)

    async def adjust(
        self, key: str, tokens: int, *, rate_per_s: float | None = None, burst: int | None = None
    ) -> None:
        rate, size = bucket_params(self._rate, self._burst, rate_per_s, burst)
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

"""The rate-limiter interface every limiter implements, and what its calls share.

A :class:`RateLimiter` takes ``cost`` tokens from a key's bucket or refuses, and
:meth:`RateLimiter.adjust` gives tokens back or takes more without refusing. It answers
with a :class:`LimitDecision`, whose :meth:`LimitDecision.headers` the caller sends. Also
here: the failure modes for a limiter whose backend is away, the hook that reports such
decisions, and the checks of a call's bucket parameters that every implementation applies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, Protocol

from pydantic import BaseModel


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


def check_params(rate_per_s: float, burst: int) -> None:
    if rate_per_s <= 0 or burst < 1:
        raise ValueError("a token bucket needs rate_per_s > 0 and burst >= 1")


def bucket_params(
    default_rate: float, default_burst: int, rate_per_s: float | None, burst: int | None
) -> tuple[float, int]:
    """A call's bucket: its own rate and size where given, the limiter's otherwise."""
    rate, size = default_rate if rate_per_s is None else rate_per_s, burst or default_burst
    check_params(rate, size)
    return rate, size


def check_cost(cost: int, burst: int) -> None:
    # A cost above the bucket size could never be served: that is a caller bug.
    if not 1 <= cost <= burst:
        raise ValueError(f"cost must be between 1 and the bucket size ({burst}), got {cost}")

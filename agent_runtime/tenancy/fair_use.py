"""Fair use: requests per minute per key and model tokens per minute per tenant.

Both are token buckets (:mod:`agent_runtime.tenancy.token_buckets`), one Lua call per decision,
sized from the tenant's own limits (:meth:`agent_runtime.tenancy.tenants.TenantStore.get_limits`,
set through the
admin API and cached per replica by :class:`TenantLimitsCache`) or, where the tenant set
none, the runtime's defaults (``AGENT_*``):

* :class:`RequestLimiter` (the ingress, on every authenticated request): a key's bucket
  holds ``requests_per_minute`` requests and refills at that rate, so a key sustains that
  many a minute and may send them all at once; without an override, the default bucket
  (``AGENT_RATE_LIMIT_PER_SECOND`` refill, ``AGENT_RATE_LIMIT_BURST`` size). A run batch
  costs one request per run, as separate creations would.
* :class:`TokenRateObserver` (the router, around every model request, as a
  :class:`agent_runtime.gateway.call_observer.CallObserver`): a tenant's bucket holds
  ``tokens_per_minute`` tokens. Before a call it reserves the request's estimate (prompt tokens, an
  estimate that
  errs high, plus the largest completion bound of the chain); after it, it settles to the
  tokens the provider reported (a refund, or a debit that may put the bucket in debt).

A refusal is :class:`RateLimited` (429) naming the limit (``limit``: ``requests_per_key``,
``tokens_per_minute``; :mod:`agent_runtime.tenancy.run_limits` adds ``concurrent_runs`` and
``queued_runs``); :func:`refusal_headers` gives its ``X-RateLimit-*`` and ``Retry-After``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent_runtime.config.settings import BudgetSettings, LimitSettings
from agent_runtime.core.errors import AgentRuntimeError, DependencyUnavailable, RateLimited
from agent_runtime.core.records import Principal, TenantLimits
from agent_runtime.core.ttl_cache import TtlCache
from agent_runtime.gateway.call_observer import CallPlan, CallReport
from agent_runtime.tenancy.rate_limiter import LimitDecision, RateLimiter, UnavailableHook
from agent_runtime.tenancy.token_buckets import build_limiter

logger = logging.getLogger(__name__)

TOKENS_PREFIX = "agent:tpm:"
REQUESTS_PER_KEY = "requests_per_key"
TOKENS_PER_MINUTE = "tokens_per_minute"


class LimitsSource(Protocol):
    """Where tenants' own limits are read (:class:`agent_runtime.tenancy.tenants.TenantStore`)."""

    async def get_limits(self, tenant_id: str) -> TenantLimits: ...


class TenantLimitsCache:
    """A tenant's own limits, cached ``ttl_s`` per replica; concurrent misses share one
    query. A changed limit applies on every replica within ``ttl_s`` (at once on the
    replica that :meth:`invalidate` s it). When the database cannot be read the last known
    limits are used (the defaults if none): limits must not take the API down with them.
    """

    def __init__(
        self, source: LimitsSource, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._cache: TtlCache[TenantLimits] = TtlCache(source.get_limits, ttl_s, clock=clock)

    async def get(self, tenant_id: str) -> TenantLimits:
        try:
            return await self._cache.get(tenant_id)
        except DependencyUnavailable as exc:
            stale = self._cache.last(tenant_id)
            logger.warning(
                "tenant limits of %s unreadable (%s); using the %s",
                tenant_id,
                exc.code,
                "last known ones" if stale else "defaults",
            )
            return stale or TenantLimits()

    def invalidate(self, tenant_id: str | None = None) -> None:
        self._cache.invalidate(tenant_id)


def _per_minute(count: int) -> tuple[float, int]:
    """A bucket that sustains ``count`` a minute: refill count/60 per second, size count."""
    return count / 60.0, count


class RequestLimiter:
    """Requests per API key, sized by the key's tenant (see the module's docstring)."""

    def __init__(
        self,
        limiter: RateLimiter,
        limits: TenantLimitsCache,
        *,
        default_rate_per_s: float,
        default_burst: int,
    ) -> None:
        self.limiter = limiter
        self.limits = limits
        self._default = (default_rate_per_s, default_burst)

    async def _bucket(self, principal: Principal) -> tuple[float, int]:
        own = (await self.limits.get(principal.tenant_id)).requests_per_minute
        return _per_minute(own) if own else self._default

    async def check(self, principal: Principal) -> LimitDecision:
        """The key's decision (allowed or not); raises only when it cannot be made and
        the failure mode is ``fail_closed`` (:class:`DependencyUnavailable`)."""
        rate, burst = await self._bucket(principal)
        return await self.limiter.hit(f"key:{principal.key_id}", rate_per_s=rate, burst=burst)

    async def check_batch(self, principal: Principal, runs: int) -> LimitDecision:
        """A batch of ``runs`` runs costs ``runs`` requests, as that many run creations
        would: :meth:`check` took the batch's own request, this takes the ``runs - 1``
        others, all or none. A batch larger than the key's bucket could never pass: it is
        refused outright (:class:`RateLimited`, ``requested``)."""
        rate, burst = await self._bucket(principal)
        if runs > burst:
            raise RateLimited(
                f"a batch of {runs} runs counts as {runs} requests, more than this API key's "
                f"bucket holds ({burst}); send smaller batches",
                retry_after=burst / rate,  # the time the bucket takes to fill
                limit=REQUESTS_PER_KEY,
                maximum=burst,
                requested=runs,
            )
        return await self.limiter.hit(
            f"key:{principal.key_id}", runs - 1, rate_per_s=rate, burst=burst
        )

    def default_headers(self) -> dict[str, str]:
        """What a response says when no decision could be made (fail_closed refusals)."""
        return {
            "X-RateLimit-Limit": str(self._default[1]),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "1",
        }

    async def ping(self) -> None:
        await self.limiter.ping()

    async def close(self) -> None:
        await self.limiter.close()


def refused(decision: LimitDecision) -> RateLimited:
    """The 429 of a refused per-key decision."""
    return RateLimited(
        f"rate limit of {decision.limit} requests (burst) for this API key exceeded; "
        f"retry after {whole_seconds(decision.retry_after_s)} s",
        retry_after=decision.retry_after_s,
        limit=REQUESTS_PER_KEY,
        maximum=decision.limit,
        remaining=decision.remaining,
        reset_after=decision.reset_after_s,
    )


def refusal_headers(error: AgentRuntimeError) -> dict[str, str]:
    """``X-RateLimit-*`` of the limit that refused (when the error names one) and
    ``Retry-After`` (whole seconds, at least 1) when the error gives a retry time."""
    details = error.details
    headers: dict[str, str] = {}
    if isinstance(details.get("maximum"), int):
        reset = details.get("reset_after", details.get("retry_after", 1.0))
        headers["X-RateLimit-Limit"] = str(details["maximum"])
        headers["X-RateLimit-Remaining"] = str(int(details.get("remaining", 0)))
        headers["X-RateLimit-Reset"] = str(whole_seconds(float(reset)))
    retry_after = details.get("retry_after")
    if isinstance(retry_after, int | float):
        headers["Retry-After"] = str(whole_seconds(float(retry_after)))
    return headers


def whole_seconds(seconds: float) -> int:
    """A wait as ``Retry-After`` gives it (whole seconds, at least 1): the message says the
    same, never "retry after 0.0 s"."""
    return max(1, math.ceil(seconds))


@dataclass(frozen=True, slots=True)
class TokenTicket:
    """What :meth:`TokenRateObserver.before_call` reserved; settled by ``after_call``."""

    tenant_id: str
    tokens: int
    rate_per_s: float
    burst: int


class TokenRateObserver:
    """Tokens per minute per tenant around each model request (a ``CallObserver``).

    ``limits`` gives a tenant's own ``tokens_per_minute`` (else ``default_tokens_per_minute``;
    neither: the tenant is not limited and Redis is not touched). ``default_max_tokens`` is
    the completion bound counted for a model sent none (``AGENT_DEFAULT_MAX_OUTPUT_TOKENS``).
    A request whose estimate alone exceeds the tenant's limit is refused outright: no wait
    would let it through. Requests without a tenant (internal calls) are not limited.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        limits: TenantLimitsCache,
        *,
        default_tokens_per_minute: int | None,
        default_max_tokens: int,
    ) -> None:
        self.limiter = limiter
        self.limits = limits
        self._default = default_tokens_per_minute
        self._default_max_tokens = default_max_tokens

    def estimate(self, plan: CallPlan) -> int:
        default = self._default_max_tokens
        bound = max((plan.completion_bound(m, default) for m in plan.models), default=default)
        return max(1, plan.prompt_tokens + bound)

    async def before_call(self, plan: CallPlan) -> TokenTicket | None:
        tenant_id = plan.request.tenant_id
        if not tenant_id:
            return None
        per_minute = (await self.limits.get(tenant_id)).tokens_per_minute or self._default
        if per_minute is None:
            return None
        rate, burst = _per_minute(per_minute)
        tokens = self.estimate(plan)
        if tokens > burst:
            raise RateLimited(
                f"this request may use up to {tokens} tokens (prompt plus max_tokens), more "
                f"than the tenant's limit of {per_minute} tokens per minute; lower max_tokens "
                "or shorten the prompt",
                retry_after=60.0,
                limit=TOKENS_PER_MINUTE,
                maximum=per_minute,
                requested=tokens,
            )
        decision = await self.limiter.hit(
            f"tenant:{tenant_id}", tokens, rate_per_s=rate, burst=burst
        )
        if not decision.allowed:
            raise RateLimited(
                f"token rate limit of {per_minute} tokens per minute for this tenant exceeded "
                f"(this request may use up to {tokens}, {decision.remaining} are left); "
                f"retry after {whole_seconds(decision.retry_after_s)} s",
                retry_after=decision.retry_after_s,
                limit=TOKENS_PER_MINUTE,
                maximum=per_minute,
                remaining=decision.remaining,
                requested=tokens,
                reset_after=decision.reset_after_s,
            )
        return TokenTicket(tenant_id, tokens, rate, burst)

    async def after_call(self, plan: CallPlan, report: CallReport, ticket: object) -> None:
        if not isinstance(ticket, TokenTicket):
            return
        used = report.usage.input_tokens + report.usage.output_tokens
        await self.limiter.adjust(
            f"tenant:{ticket.tenant_id}",
            ticket.tokens - used,
            rate_per_s=ticket.rate_per_s,
            burst=ticket.burst,
        )

    async def ping(self) -> None:
        await self.limiter.ping()

    async def close(self) -> None:
        await self.limiter.close()


def build_token_rate_observer(
    limits: LimitSettings,
    budgets: BudgetSettings,
    source: LimitsSource,
    on_unavailable: UnavailableHook | None = None,
) -> TokenRateObserver:
    """The router's tokens-per-minute observer: buckets in the Redis of
    ``AGENT_REDIS_URL`` (prefix ``agent:tpm:``, the failure mode applies) or in process;
    ``source`` is a :class:`agent_runtime.tenancy.tenants.TenantStore` over the set-up metadata
    store."""
    limiter = build_limiter(
        limits,
        name=TOKENS_PER_MINUTE,
        prefix=TOKENS_PREFIX,
        rate_per_s=1.0,  # every call gives the tenant's own rate and size
        burst=1,
        on_unavailable=on_unavailable,
    )
    return TokenRateObserver(
        limiter,
        TenantLimitsCache(source, limits.tenant_limits_cache_ttl_s),
        default_tokens_per_minute=limits.tokens_per_minute,
        default_max_tokens=budgets.default_max_output_tokens,
    )

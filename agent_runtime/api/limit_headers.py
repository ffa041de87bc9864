"""The ingress's side of fair use: the per-key request limit of every authenticated request,
and the rate-limit headers of every answer to one.

Every answer to a request whose key was accepted carries ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (the key's request bucket: its size,
whole requests left, seconds until full), set here and added by the ``observe``
middleware. A refusal by another limit (tokens per minute, concurrent or queued runs)
carries that limit's figures instead, and ``Retry-After`` (:func:`error_headers`). Public
routes (``/ok``, ``/health``), the bootstrap admin key and requests whose key was refused
(401) have no bucket, hence no such headers.
"""

from __future__ import annotations

from fastapi import Request

from agent_runtime.core.errors import AgentRuntimeError, DependencyUnavailable, RateLimited
from agent_runtime.core.records import Principal
from agent_runtime.replica.metrics import IngressMetrics
from agent_runtime.tenancy.fair_use import (
    REQUESTS_PER_KEY,
    RequestLimiter,
    refusal_headers,
    refused,
)


async def check_request_limit(
    request: Request,
    limiter: RequestLimiter,
    metrics: IngressMetrics,
    principal: Principal,
    batch: int = 1,
) -> None:
    """Take one request from the key's bucket; 429 naming ``requests_per_key`` when empty.
    ``batch`` > 1: the other runs of a run batch whose request was taken, one request each
    (:meth:`RequestLimiter.check_batch`).

    With Redis unreachable: ``fail_open`` decides in process (never raises for it);
    ``fail_closed`` raises :class:`DependencyUnavailable` (503 with ``Retry-After``).
    """
    try:
        if batch > 1:
            decision = await limiter.check_batch(principal, batch)
        else:
            decision = await limiter.check(principal)
    except DependencyUnavailable:
        request.state.limit_headers = limiter.default_headers()
        raise
    except RateLimited:
        metrics.rate_limited.inc(tags={"limit": REQUESTS_PER_KEY})
        raise
    request.state.limit_headers = decision.headers()
    if not decision.allowed:
        metrics.rate_limited.inc(tags={"limit": REQUESTS_PER_KEY})
        raise refused(decision)


def error_headers(request: Request, error: AgentRuntimeError) -> dict[str, str]:
    """An error answer's headers: the request's rate-limit headers, replaced by those of
    the limit that refused it, and ``Retry-After`` when the error gives a retry time."""
    headers = dict(getattr(request.state, "limit_headers", None) or {})
    headers.update(refusal_headers(error))
    return headers

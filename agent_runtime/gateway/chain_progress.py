"""One request's walk down its fallback chain: the tries it records, the wait before trying a
model again, and the report its observers get when it ends (:class:`ChainProgress`).

Shared by the router's plain calls (:mod:`agent_runtime.gateway.model_router`) and its streamed
ones (:mod:`agent_runtime.gateway.model_router_stream`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal

from agent_runtime.config.models_file import RetryPolicy
from agent_runtime.core.errors import ProviderError, ProviderRejected, StreamInterrupted
from agent_runtime.core.types import Attempt, TokenUsage
from agent_runtime.gateway.call_observer import CallReport, Outcome
from agent_runtime.gateway.chains import Route

Sleep = Callable[[float], Awaitable[None]]


def usd(amount: Decimal | None) -> float | None:
    return None if amount is None else float(amount)


def elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def failure_reason(exc: ProviderError) -> str:
    return f"HTTP {exc.status}" if exc.status is not None else exc.message


def call_outcome(exc: BaseException) -> Outcome:
    if isinstance(exc, StreamInterrupted):
        return "partial"
    if isinstance(exc, ProviderRejected):
        return "rejected"
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "cancelled"
    return "error"


@dataclass
class ChainProgress:
    """One request's walk down its chain."""

    alias: str
    started: float
    deadline: float
    attempts: list[Attempt] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    provider_ms: float = 0.0
    model: str | None = None
    usage: TokenUsage = field(default_factory=TokenUsage)
    route: Route | None = None
    first_token_ms: float | None = None

    def record(self, model: str, outcome: str, error: str | None, latency_ms: float) -> None:
        self.attempts.append(
            Attempt(model=model, outcome=outcome, error=error, latency_ms=latency_ms)
        )
        if outcome not in ("circuit_open", "deadline"):
            self.provider_ms += latency_ms

    def skip(self, model: str, outcome: str, why: str) -> None:
        self.record(model, outcome, why, 0.0)
        self.failures.append(f"{model}: {why}")

    def report(self, outcome: Outcome, error: BaseException | None = None) -> CallReport:
        price = self.route.planned.price if self.route is not None else None
        return CallReport(
            outcome=outcome,
            model=self.model,
            usage=self.usage,
            latency_ms=elapsed_ms(self.started),
            attempts=tuple(self.attempts),
            error=error,
            price=price,
            first_token_ms=self.first_token_ms,
        )


def retry_wait(
    policy: RetryPolicy,
    exc: ProviderError,
    retry: int,
    deadline: float,
    jitter: Callable[[], float],
) -> float | None:
    """Seconds to wait before trying the same model again, or None: the next model."""
    if retry >= policy.max_retries:
        return None
    kind = getattr(exc, "kind", "status")
    if exc.status is not None:
        retryable = exc.status in policy.retry_statuses
    elif kind == "timeout":
        retryable = policy.retry_timeouts
    elif kind == "connection":
        retryable = policy.retry_connection_errors
    else:
        retryable = False
    if not retryable:
        return None
    wait_s: float | None = getattr(exc, "retry_after_s", None)
    if wait_s is not None:
        if wait_s > policy.retry_after_max_s:
            return None  # the provider asks for longer than we wait: next model
    else:
        ceiling = min(policy.backoff_max_s, policy.backoff_initial_s * 2**retry)
        wait_s = jitter() * ceiling  # "full jitter"
    if time.perf_counter() + wait_s >= deadline:
        return None
    return wait_s

"""The router benchmark's failover: concurrent clients through two router replicas, the
fallback alone, then with the primary failing every call until the breakers skip it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from langchain_core.messages import HumanMessage

from agent_runtime.core.types import ChatRequest
from agent_runtime.gateway.call_observer import CallPlan, CallReport
from agent_runtime.gateway.model_router import ModelRouter
from loadtests.bench_router_support import PROMPT, Latency, Provider, breakers, models_config

FAILOVER_P99_SLACK_MS = 20.0


@dataclass
class Failover:
    workers: int
    phase_s: float
    provider_ms: float
    breakers: str
    fallback_alone: Latency
    during: Latency  # every call of phase 2
    after_open: Latency  # calls started once the primary was skipped on every replica
    errors: int
    first_error: str | None
    open_after_s: float | None  # from the failures starting to "open everywhere"
    primary_calls: int  # calls that reached the failing primary
    answered_by: dict[str, int] = field(default_factory=dict)

    @property
    def target_met(self) -> bool:
        limit = self.fallback_alone.p99_ms + FAILOVER_P99_SLACK_MS
        return self.errors == 0 and self.after_open.n > 0 and self.after_open.p99_ms <= limit


class SkipWatch:
    """A call observer noting when its replica first skipped the primary."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.first_skip: float | None = None
        self.primary_calls = 0

    async def before_call(self, plan: CallPlan) -> object:
        return time.perf_counter()

    async def after_call(self, plan: CallPlan, report: CallReport, ticket: object) -> None:
        for attempt in report.attempts:
            if attempt.model != self.model:
                continue
            if attempt.outcome == "circuit_open":
                if self.first_skip is None and isinstance(ticket, float):
                    self.first_skip = ticket
            else:
                self.primary_calls += 1


async def load(
    routers: Sequence[ModelRouter], alias: str, workers: int, seconds: float
) -> list[tuple[float, float, str | None, str | None]]:
    """(start, latency ms, answering model, error) of every call of ``workers`` loops."""
    results: list[tuple[float, float, str | None, str | None]] = []
    stop_at = time.perf_counter() + seconds
    turn = 0

    async def worker() -> None:
        nonlocal turn
        while time.perf_counter() < stop_at:
            router = routers[turn % len(routers)]
            turn += 1
            request = ChatRequest(alias=alias, messages=[HumanMessage(PROMPT)])
            started = time.perf_counter()
            try:
                result = await router.chat(request)
                results.append(
                    (started, (time.perf_counter() - started) * 1000, result.model, None)
                )
            except Exception as exc:
                elapsed = (time.perf_counter() - started) * 1000
                results.append((started, elapsed, None, f"{type(exc).__name__}: {exc}"[:200]))

    await asyncio.gather(*(worker() for _ in range(workers)))
    return results


async def measure_failover(
    provider: Provider, workers: int, phase_s: float, provider_ms: float, redis_url: str | None
) -> Failover:
    prefix = f"bench:breaker:{secrets.token_hex(4)}:"
    watches = [SkipWatch("fake-smart"), SkipWatch("fake-smart")]
    registries = [breakers(redis_url, prefix), breakers(redis_url, prefix)]
    routers = [
        ModelRouter(models_config(), provider.url, registry, observers=[watch])
        for registry, watch in zip(registries, watches, strict=True)
    ]
    try:
        await load(routers, "fallback", workers, min(1.0, phase_s / 4))  # warm-up
        alone = await load(routers, "fallback", workers, phase_s)
        await provider.set_faults(
            "fake-smart", {"latency_ms": provider_ms, "error_rates": {"500": 1.0}}
        )
        failing_from = time.perf_counter()
        during = await load(routers, "smart", workers, phase_s)
    finally:
        await provider.set_faults("fake-smart", None)
        for router, registry in zip(routers, registries, strict=True):
            await router.close()
            await registry.close()
    skips = [watch.first_skip for watch in watches]
    everywhere = max(skips) if all(s is not None for s in skips) else None  # type: ignore[type-var]
    after = [r for r in during if everywhere is not None and r[0] >= everywhere]
    errors = [r[3] for r in during if r[3] is not None]
    answered: dict[str, int] = {}
    for _, _, model, _ in during:
        if model is not None:
            answered[model] = answered.get(model, 0) + 1
    return Failover(
        workers=workers,
        phase_s=phase_s,
        provider_ms=provider_ms,
        breakers="shared (Redis)" if redis_url else "per process",
        fallback_alone=Latency.of([r[1] for r in alone if r[3] is None]),
        during=Latency.of([r[1] for r in during]),
        after_open=Latency.of([r[1] for r in after]),
        errors=len(errors),
        first_error=errors[0] if errors else None,
        open_after_s=round(everywhere - failing_from, 3) if everywhere is not None else None,
        primary_calls=sum(watch.primary_calls for watch in watches),
        answered_by=answered,
    )

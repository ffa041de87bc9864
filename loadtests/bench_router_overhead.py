"""The router benchmark's overhead: one client's sequential calls direct, through the
``openai`` SDK and through ``ModelRouter``, in shuffled rounds, and the breakers' own cost.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import openai
from langchain_core.messages import HumanMessage

from agent_runtime.core.types import ChatRequest
from agent_runtime.gateway.breakers import Breakers, Ticket
from agent_runtime.gateway.model_router import ModelRouter
from loadtests.bench_router_support import PROMPT, Latency, breakers, models_config

OVERHEAD_P50_TARGET_MS = 2.0
OVERHEAD_P99_TARGET_MS = 10.0
KINDS = ("direct", "sdk", "router")


@dataclass
class Overhead:
    calls: int
    provider_ms: float
    breakers: str
    latency: dict[str, Latency]
    overhead_p50_ms: float  # p50(router) - p50(direct)
    overhead_p99_ms: float  # p99(router) - p99(direct)
    paired: Latency  # percentiles of the per-round router - direct differences
    over_sdk_p50_ms: float
    breaker_us: dict[str, float]
    errors: int

    @property
    def target_met(self) -> bool:
        return (
            self.errors == 0
            and self.overhead_p50_ms <= OVERHEAD_P50_TARGET_MS
            and self.overhead_p99_ms <= OVERHEAD_P99_TARGET_MS
        )


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await fn()
    return (time.perf_counter() - started) * 1000


async def measure_overhead(
    url: str, calls: int, warmup: int, redis_url: str | None, provider_ms: float
) -> Overhead:
    prefix = f"bench:breaker:{secrets.token_hex(4)}:"
    registry = breakers(redis_url, prefix)
    router = ModelRouter(models_config(), url, registry)
    request = ChatRequest(alias="fast", messages=[HumanMessage(PROMPT)])
    route = router._chain("fast")[0]
    body = route.client.payload(route.model_id, request, route.max_tokens(request), stream=False)
    headers = {"Authorization": "Bearer bench"}
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
        sdk_http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
        sdk = openai.AsyncOpenAI(
            base_url=url,
            api_key="bench",
            http_client=sdk_http,  # type: ignore[arg-type]
            max_retries=0,
        )
        stack.push_async_callback(router.close)
        stack.push_async_callback(registry.close)

        async def direct() -> None:
            response = await http.post(f"{url}/chat/completions", json=body, headers=headers)
            response.raise_for_status()
            response.json()

        async def via_sdk() -> None:
            await sdk.chat.completions.create(
                model="fake-fast",
                messages=[{"role": "user", "content": PROMPT}],
                max_completion_tokens=body.get("max_completion_tokens") or 4096,
            )

        async def via_router() -> None:
            await router.chat(request)

        kinds: dict[str, Callable[[], Awaitable[None]]] = {
            "direct": direct,
            "sdk": via_sdk,
            "router": via_router,
        }
        samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
        paired: list[float] = []
        errors = 0
        shuffle = random.Random(7)
        for index in range(warmup + calls):
            order = list(KINDS)
            shuffle.shuffle(order)
            got: dict[str, float] = {}
            for kind in order:
                try:
                    got[kind] = await timed(kinds[kind])
                except Exception:
                    errors += 1
            if index >= warmup and len(got) == len(KINDS):
                for kind, value in got.items():
                    samples[kind].append(value)
                paired.append(got["router"] - got["direct"])
        breaker_us = {"router's": await breaker_cost(registry, "fake-fast")}
    latency = {kind: Latency.of(values) for kind, values in samples.items()}
    return Overhead(
        calls=calls,
        provider_ms=provider_ms,
        breakers="shared (Redis)" if redis_url else "per process",
        latency=latency,
        overhead_p50_ms=round(latency["router"].p50_ms - latency["direct"].p50_ms, 3),
        overhead_p99_ms=round(latency["router"].p99_ms - latency["direct"].p99_ms, 3),
        paired=Latency.of(paired),
        over_sdk_p50_ms=round(latency["router"].p50_ms - latency["sdk"].p50_ms, 3),
        breaker_us=breaker_us,
        errors=errors,
    )


async def breaker_cost(registry: Breakers, model: str, rounds: int = 20_000) -> float:
    """Microseconds per call of a closed breaker: refuses_calls + admit + record_success."""
    breaker = registry.get(model)
    ticket: Ticket = await breaker.admit()
    await breaker.record_success(ticket)
    started = time.perf_counter()
    for _ in range(rounds):
        breaker.refuses_calls()
        ticket = await breaker.admit()
        await breaker.record_success(ticket)
    return round((time.perf_counter() - started) / rounds * 1e6, 2)

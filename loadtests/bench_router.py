"""Router overhead and failover, measured in one process against a fake provider on a socket.

    python loadtests/bench_router.py [--calls 2000] [--provider-ms 0] [--workers 16]
                                     [--phase-s 10] [--failover-ms 20] [--redis-url URL]
                                     [--no-redis] [--json]

No Ray: the fake OpenAI-compatible provider (``agent_runtime/fake/provider_app.py``) runs as its own
uvicorn process on a free local port, and this process calls it.

**Overhead.** One client, sequential calls, in rounds: each round makes one call of each
kind in a shuffled order, so that whatever else the machine does falls on all of them
alike: ``direct`` (an httpx POST of the same body the router sends, JSON decoded), ``sdk``
(the official ``openai`` client's ``chat.completions.create``) and ``router``
(``ModelRouter.chat`` on a one-model alias, breakers shared through Redis unless
``--no-redis``: the production path). The overhead is router minus direct: the difference
of their medians and of their 99th percentiles (and, for reference, the same percentiles of
the round-by-round differences, which add both calls' noise). Targets: median <= 2 ms,
p99 <= 10 ms. The breakers' own cost is timed apart (admit + record a success, closed).

**Failover.** ``--workers`` concurrent clients loop calls for ``--phase-s`` seconds, through
two router "replicas" taking turns (two ``ModelRouter`` objects with their own clients and
breaker registries, sharing breaker state through Redis). Phase 1 calls an alias whose only
model is ``fake-fallback``: the fallback's own latency. Phase 2 calls ``smart`` =
[``fake-smart``, ``fake-fallback``] after making ``fake-smart`` fail every call (HTTP 500
after the same latency, through the fake's control endpoint). Counted: client-visible
errors (target 0) and, for calls that started once every replica had skipped the primary
at least once ("open everywhere"), the p99 latency against phase 1's p99 + 20 ms.

Exit status 0 when the run completed (whether or not targets were met), 2 when it could
not run. ``--json`` prints the figures as JSON too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import openai
from langchain_core.messages import HumanMessage

from agent_runtime.core.types import ChatRequest
from agent_runtime.gateway.breakers import Breakers, Ticket
from agent_runtime.gateway.call_observer import CallPlan, CallReport
from agent_runtime.gateway.model_router import ModelRouter

try:
    from loadtests.bench_router_support import Latency, Provider, breakers, models_config
except ModuleNotFoundError:  # run as a script (python loadtests/bench_router.py)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from loadtests.bench_router_support import Latency, Provider, breakers, models_config

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
OVERHEAD_P50_TARGET_MS = 2.0
OVERHEAD_P99_TARGET_MS = 10.0
FAILOVER_P99_SLACK_MS = 20.0
PROMPT = "hello from the router benchmark"
KINDS = ("direct", "sdk", "router")


# -- results ------------------------------------------------------------------------------


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


# -- overhead -----------------------------------------------------------------------------


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


# -- failover -----------------------------------------------------------------------------


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


# -- the run ------------------------------------------------------------------------------


async def reachable(redis_url: str) -> bool:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=1)
    try:
        await client.ping()
        return True
    except Exception:
        return False
    finally:
        await client.aclose()


async def run_benchmark(
    *,
    calls: int,
    warmup: int,
    provider_ms: float,
    workers: int,
    phase_s: float,
    failover_ms: float,
    redis_url: str | None,
) -> dict[str, Any]:
    token = secrets.token_hex(8)
    overhead_provider = Provider(provider_ms, token)
    try:
        await overhead_provider.ready()
        overhead = await measure_overhead(
            overhead_provider.url, calls, warmup, redis_url, provider_ms
        )
    finally:
        overhead_provider.stop()
    failover_provider = Provider(failover_ms, token)
    try:
        await failover_provider.ready()
        failover = await measure_failover(
            failover_provider, workers, phase_s, failover_ms, redis_url
        )
    finally:
        failover_provider.stop()
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
        "overhead": {**asdict(overhead), "target_met": overhead.target_met},
        "failover": {**asdict(failover), "target_met": failover.target_met},
    }


def render(result: dict[str, Any]) -> str:
    o, f = result["overhead"], result["failover"]
    lat = o["latency"]
    lines = [
        f"Overhead ({o['calls']} rounds, provider {o['provider_ms']:g} ms, "
        f"breakers {o['breakers']}):",
        "  | call | p50 ms | p99 ms |",
        *(f"  | {k} | {lat[k]['p50_ms']:.2f} | {lat[k]['p99_ms']:.2f} |" for k in KINDS),
        f"  router - direct: p50 {o['overhead_p50_ms']:.2f} ms (target <= "
        f"{OVERHEAD_P50_TARGET_MS:g}), p99 {o['overhead_p99_ms']:.2f} ms (target <= "
        f"{OVERHEAD_P99_TARGET_MS:g}); per round: p50 {o['paired']['p50_ms']:.2f}, "
        f"p99 {o['paired']['p99_ms']:.2f}; router - sdk p50 {o['over_sdk_p50_ms']:.2f} ms",
        f"  breaker per call: {o['breaker_us']} us; errors {o['errors']}; "
        f"target met: {o['target_met']}",
        f"Failover ({f['workers']} workers, {f['phase_s']:g} s a phase, provider "
        f"{f['provider_ms']:g} ms, breakers {f['breakers']}, 2 router replicas):",
        f"  fallback alone p50/p99 {f['fallback_alone']['p50_ms']:.2f} / "
        f"{f['fallback_alone']['p99_ms']:.2f} ms ({f['fallback_alone']['n']} calls)",
        f"  primary failing: all calls p50/p99 {f['during']['p50_ms']:.2f} / "
        f"{f['during']['p99_ms']:.2f} ms ({f['during']['n']}); once open everywhere "
        f"{f['after_open']['p50_ms']:.2f} / {f['after_open']['p99_ms']:.2f} ms "
        f"({f['after_open']['n']}), target p99 <= "
        f"{f['fallback_alone']['p99_ms'] + FAILOVER_P99_SLACK_MS:.2f}",
        f"  client-visible errors {f['errors']}; open everywhere after {f['open_after_s']} s; "
        f"calls that reached the primary {f['primary_calls']}; answered by "
        f"{f['answered_by']}; target met: {f['target_met']}",
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="overhead rounds")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--provider-ms", type=float, default=0.0, help="overhead: latency")
    parser.add_argument("--workers", type=int, default=16, help="failover: concurrent clients")
    parser.add_argument("--phase-s", type=float, default=10.0, help="failover: each phase")
    parser.add_argument("--failover-ms", type=float, default=20.0, help="failover: latency")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--no-redis", action="store_true", help="per-process breakers")
    parser.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    redis_url = None if args.no_redis else args.redis_url
    if redis_url is not None and not asyncio.run(reachable(redis_url)):
        print(f"Redis at {redis_url} is unreachable (or pass --no-redis)", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(
            run_benchmark(
                calls=args.calls,
                warmup=args.warmup,
                provider_ms=args.provider_ms,
                workers=args.workers,
                phase_s=args.phase_s,
                failover_ms=args.failover_ms,
                redis_url=redis_url,
            )
        )
    except Exception as error:
        print(f"Benchmark failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    print(render(result))
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
import secrets
import sys
from dataclasses import asdict
from typing import Any

try:
    from loadtests.bench_router_failover import FAILOVER_P99_SLACK_MS, measure_failover
    from loadtests.bench_router_overhead import (
        KINDS,
        OVERHEAD_P50_TARGET_MS,
        OVERHEAD_P99_TARGET_MS,
        measure_overhead,
    )
    from loadtests.bench_router_support import Provider
except ModuleNotFoundError:  # run as a script (python loadtests/bench_router.py)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from loadtests.bench_router_failover import FAILOVER_P99_SLACK_MS, measure_failover
    from loadtests.bench_router_overhead import (
        KINDS,
        OVERHEAD_P50_TARGET_MS,
        OVERHEAD_P99_TARGET_MS,
        measure_overhead,
    )
    from loadtests.bench_router_support import Provider

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


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

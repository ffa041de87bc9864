"""``loadtests/bench_router.py`` with tiny numbers against the real Redis, so it cannot rot.

Only the shape of the result is checked, never a speed: the figures belong to
``docs/benchmarks.md``. A Redis that is down makes this fail, never skip.
"""

from __future__ import annotations

import json

from loadtests.bench_router import render, run_benchmark
from loadtests.bench_router_overhead import KINDS


async def test_tiny_run_measures_overhead_and_failover(redis_url: str) -> None:
    result = await run_benchmark(
        calls=20,
        warmup=5,
        provider_ms=0.0,
        workers=4,
        phase_s=1.0,
        failover_ms=5.0,
        redis_url=redis_url,
    )
    overhead, failover = result["overhead"], result["failover"]
    assert overhead["errors"] == 0
    assert set(overhead["latency"]) == set(KINDS)
    for kind in KINDS:
        latency = overhead["latency"][kind]
        assert latency["n"] == 20 and 0 < latency["p50_ms"] <= latency["p99_ms"]
    assert overhead["breakers"] == "shared (Redis)"
    assert overhead["breaker_us"]["router's"] > 0

    assert failover["errors"] == 0, failover["first_error"]
    assert failover["fallback_alone"]["n"] > 0 and failover["during"]["n"] > 0
    assert failover["answered_by"] == {"fake-fallback": failover["during"]["n"]}
    assert failover["open_after_s"] is not None, "both replicas ended up skipping the primary"
    assert failover["after_open"]["n"] > 0
    assert isinstance(failover["target_met"], bool)
    assert json.loads(json.dumps(result)) == result
    assert "router - direct" in render(result)

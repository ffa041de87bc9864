"""Budget enforcement under a race for the last dollar, against the real Redis.

    python loadtests/bench_budget.py [--calls 50] [--repeats 20] [--replicas 5]
                                     [--limit-usd 10] [--last-usd 1] [--reserve-usd 0.03]
                                     [--delay-ms 5,20] [--redis-url URL] [--json]

Each repetition gives a tenant a daily budget of ``--limit-usd`` (plus a monthly tenant
budget and a daily key budget that never bind, so every reservation checks three
counters), spends all but ``--last-usd`` of it, then starts ``--calls`` concurrent calls
(asyncio tasks). A call is what the router does: reserve its worst case
(``--reserve-usd``) with :meth:`agent_runtime.tenancy.budgets.BudgetGuard.reserve`, await a fake
provider (a uniform ``--delay-ms`` sleep), settle the real cost (uniform between half the
reservation and all of it). The calls are spread over ``--replicas`` guards, each with its
own Redis connection pool, as replicas would be. Budgets come from a fixed list (in
production they are read from the database and cached per replica), so what is timed is
the Lua call plus the guard's own Python.

Prints, per run: calls admitted and refused, the final spend against the limit, the
largest overspend over all repetitions against one call's reservation (the target: at
most one), that the final counter equals the sum of real costs exactly, and the p50/p99
latency of ``reserve`` under the race and sequentially. Exit status 0 when the target
holds, 1 when not, 2 when Redis cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from agent_runtime.config.pricing import format_usd, from_micros, to_micros
from agent_runtime.core.errors import BudgetExceeded, DependencyUnavailable
from agent_runtime.db.redis_client import make_redis_client
from agent_runtime.tenancy.budget_rows import Budget
from agent_runtime.tenancy.budget_spend import RedisSpend
from agent_runtime.tenancy.budgets import BudgetGuard, Reservation

TENANT = "bench"
KEY = "bench-key"


class FixedBudgets:
    def __init__(self, budgets: list[Budget]) -> None:
        self._budgets = budgets

    async def list_budgets(self, tenant_id: str) -> list[Budget]:
        return [b for b in self._budgets if b.tenant_id == tenant_id]


def budgets(limit_usd: Decimal) -> list[Budget]:
    now = datetime.now(UTC)
    big = to_micros(limit_usd * 1000)
    return [
        Budget(
            tenant_id=TENANT,
            scope=scope,
            key_id=KEY if scope == "key" else None,
            period=period,
            limit_micro_usd=to_micros(limit_usd) if (scope, period) == ("tenant", "day") else big,
            created_at=now,
            updated_at=now,
        )
        for scope, period in (("tenant", "day"), ("tenant", "month"), ("key", "day"))
    ]


@dataclass
class Repetition:
    admitted: int
    refused: int
    final_spent_micro_usd: int
    expected_spent_micro_usd: int
    overspend_micro_usd: int


@dataclass
class Result:
    calls: int
    repeats: int
    replicas: int
    limit_usd: float
    last_usd: float
    reserve_usd: float
    admitted_min: int
    admitted_max: int
    max_overspend_usd: float
    one_reservation_usd: float
    exact_accounting: bool
    race_reserve_p50_ms: float
    race_reserve_p99_ms: float
    sequential_reserve_p50_ms: float
    sequential_reserve_p99_ms: float
    settle_p50_ms: float
    target_met: bool


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def repetition(
    args: argparse.Namespace,
    clients: list[Redis],
    rng: random.Random,
    reserve_ms: list[float],
    settle_ms: list[float],
) -> Repetition:
    prefix = f"bench:budget:{uuid.uuid4().hex}:"
    source = FixedBudgets(budgets(args.limit_usd))
    guards = [
        BudgetGuard(source, RedisSpend(client), cache_ttl_s=3600, prefix=prefix)
        for client in clients
    ]
    try:
        start = guards[0]
        pre = args.limit_usd - args.last_usd
        await start.settle(await start.reserve(TENANT, KEY, pre), pre)
        costs: list[int] = []
        refused = 0
        low = to_micros(args.reserve_usd) // 2
        high = to_micros(args.reserve_usd)
        delays = [rng.uniform(*args.delay_ms) / 1000 for _ in range(args.calls)]
        actuals = [rng.randint(low, high) for _ in range(args.calls)]

        async def call(i: int) -> None:
            nonlocal refused
            guard = guards[i % len(guards)]
            began = time.perf_counter()
            try:
                reservation = await guard.reserve(TENANT, KEY, args.reserve_usd)
            except BudgetExceeded:
                refused += 1
                return
            finally:
                reserve_ms.append((time.perf_counter() - began) * 1000)
            await asyncio.sleep(delays[i])
            began = time.perf_counter()
            await guard.settle(reservation, from_micros(actuals[i]))
            settle_ms.append((time.perf_counter() - began) * 1000)
            costs.append(actuals[i])

        await asyncio.gather(*(call(i) for i in range(args.calls)))
        statuses = await start.status(TENANT)
        spent = next(s.spent_micro_usd for s in statuses if s.budget.scope == "tenant")
        expected = to_micros(pre) + sum(costs)
        limit = to_micros(args.limit_usd)
        return Repetition(len(costs), refused, spent, expected, max(0, spent - limit))
    finally:
        keys = [key async for key in clients[0].scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await clients[0].delete(*keys)


async def sequential_latency(client: Redis, limit_usd: Decimal, n: int) -> list[float]:
    prefix = f"bench:budget:{uuid.uuid4().hex}:"
    guard = BudgetGuard(FixedBudgets(budgets(limit_usd * n)), RedisSpend(client), prefix=prefix)
    timings: list[float] = []
    reservations: list[Reservation] = []
    for _ in range(n):
        began = time.perf_counter()
        reservations.append(await guard.reserve(TENANT, KEY, Decimal("0.001")))
        timings.append((time.perf_counter() - began) * 1000)
    keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await client.delete(*keys)
    return timings


async def bench(args: argparse.Namespace) -> tuple[Result, list[Repetition]]:
    clients = [make_redis_client(args.redis_url, timeout_s=5.0) for _ in range(args.replicas)]
    try:
        for client in clients:
            await client.ping()
        rng = random.Random(args.seed)
        reserve_ms: list[float] = []
        settle_ms: list[float] = []
        # Warm-up, not counted: loads the scripts and opens the pools' connections.
        await sequential_latency(clients[0], args.limit_usd, 200)
        await repetition(args, clients, random.Random(0), [], [])
        reps = [
            await repetition(args, clients, rng, reserve_ms, settle_ms) for _ in range(args.repeats)
        ]
        sequential = await sequential_latency(clients[0], args.limit_usd, 2000)
    finally:
        for client in clients:
            await client.aclose()
    one = to_micros(args.reserve_usd, round_up=True)
    worst = max(r.overspend_micro_usd for r in reps)
    exact = all(r.final_spent_micro_usd == r.expected_spent_micro_usd for r in reps)
    result = Result(
        calls=args.calls,
        repeats=args.repeats,
        replicas=args.replicas,
        limit_usd=float(args.limit_usd),
        last_usd=float(args.last_usd),
        reserve_usd=float(args.reserve_usd),
        admitted_min=min(r.admitted for r in reps),
        admitted_max=max(r.admitted for r in reps),
        max_overspend_usd=float(from_micros(worst)),
        one_reservation_usd=float(from_micros(one)),
        exact_accounting=exact,
        race_reserve_p50_ms=round(statistics.median(reserve_ms), 3),
        race_reserve_p99_ms=round(percentile(reserve_ms, 99), 3),
        sequential_reserve_p50_ms=round(statistics.median(sequential), 3),
        sequential_reserve_p99_ms=round(percentile(sequential, 99), 3),
        settle_p50_ms=round(statistics.median(settle_ms), 3),
        target_met=worst <= one and exact,
    )
    return result, reps


def report(result: Result, reps: list[Repetition], started: float) -> str:
    worst = to_micros(result.max_overspend_usd)
    lines = [
        f"{result.calls} concurrent calls x {result.repeats} repetitions over "
        f"{result.replicas} guards; daily budget ${result.limit_usd:.2f} with "
        f"${result.last_usd:.2f} left; each call reserves ${result.reserve_usd} "
        f"({time.time() - started:.1f} s, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs)",
        "",
        "| rep | admitted | refused | final spend | limit | overspend |",
        "|---|---|---|---|---|---|",
    ]
    limit = format_usd(to_micros(result.limit_usd))
    for i, rep in enumerate(reps, 1):
        lines.append(
            f"| {i} | {rep.admitted} | {rep.refused} | {format_usd(rep.final_spent_micro_usd)} | "
            f"{limit} | {format_usd(rep.overspend_micro_usd)} |"
        )
    verdict = "met" if result.target_met else "NOT met"
    lines += [
        "",
        f"max overspend {format_usd(worst)} vs one reservation "
        f"{format_usd(to_micros(result.one_reservation_usd))}: target {verdict}; "
        f"final counter == sum of real costs in every repetition: {result.exact_accounting}",
        f"admitted per repetition: {result.admitted_min}..{result.admitted_max}",
        f"reserve latency under the race: p50 {result.race_reserve_p50_ms:.3f} ms, "
        f"p99 {result.race_reserve_p99_ms:.3f} ms; settle p50 {result.settle_p50_ms:.3f} ms",
        f"reserve latency sequential (2000 calls): p50 {result.sequential_reserve_p50_ms:.3f} ms, "
        f"p99 {result.sequential_reserve_p99_ms:.3f} ms",
    ]
    return "\n".join(lines)


def _range(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    return float(low), float(high or low)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--replicas", type=int, default=5)
    parser.add_argument("--limit-usd", type=Decimal, default=Decimal(10))
    parser.add_argument("--last-usd", type=Decimal, default=Decimal(1))
    parser.add_argument("--reserve-usd", type=Decimal, default=Decimal("0.03"))
    parser.add_argument("--delay-ms", type=_range, default=(5.0, 20.0), help="low,high")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--redis-url", default=os.environ.get("AGENT_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.time()
    try:
        result, reps = asyncio.run(bench(args))
    except (DependencyUnavailable, redis_errors.RedisError, OSError) as exc:
        print(f"cannot run: Redis at {args.redis_url} unreachable ({exc})", file=sys.stderr)
        return 2
    print(report(result, reps, started))
    if args.json:
        print(json.dumps(asdict(result) | {"repetitions": [asdict(r) for r in reps]}))
    return 0 if result.target_met else 1


if __name__ == "__main__":
    sys.exit(main())

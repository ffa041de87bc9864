"""What the per-key request limiter adds to a request, measured on a real socket.

    python loadtests/bench_limits.py [--requests 5000] [--warmup 500] [--redis-url URL]
                                     [--json]

Two routes in one uvicorn server (a process of its own, as the ingress is), identical but
for one dependency: ``/plain`` resolves a fixed principal; ``/limited`` resolves it and then
takes a request from the key's bucket with :class:`agent_runtime.tenancy.fair_use.RequestLimiter`
(the class the ingress uses: the tenant's limits from its cache, one ``EVALSHA`` of the token
bucket script, the ``X-RateLimit-*`` headers). One client (httpx, keep-alive) alternates
between the two, request by request, so both see the same machine at the same moment;
the added latency is the difference of the two distributions' percentiles.

Round trips are counted twice: a wrapper around the limiter's Redis client counts every
command it sends (each is one round trip: nothing is pipelined), and Redis's
``INFO commandstats`` gives the scripts it ran meanwhile (other clients of the same Redis
add to that one) and the server time they took. The limiter call is also timed alone,
inside the server. Targets: one round trip per request and at most 0.5 ms added at p50.
Exit status 0 when both hold, 1 when not, 2 when Redis cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import uvicorn
from fastapi import Depends, FastAPI, Request, Response
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from agent_runtime.core.records import Principal, TenantLimits
from agent_runtime.db.redis_client import make_redis_client
from agent_runtime.tenancy.fair_use import RequestLimiter, TenantLimitsCache, refused
from agent_runtime.tenancy.redis_buckets import RedisTokenBucket

TARGET_ADDED_P50_MS = 0.5
TARGET_ROUND_TRIPS = 1.0
PRINCIPAL = Principal(tenant_id="bench", key_id="bench-key")


class FixedLimits:
    async def get_limits(self, tenant_id: str) -> TenantLimits:
        return TenantLimits()


class CountingRedis:
    """Counts the commands a Redis client sends (wraps ``execute_command``)."""

    def __init__(self, client: Redis) -> None:
        self.commands = 0
        original = client.execute_command

        async def counted(*args: Any, **options: Any) -> Any:
            self.commands += 1
            return await original(*args, **options)

        client.execute_command = counted  # type: ignore[method-assign]


async def principal() -> Principal:
    return PRINCIPAL


Who = Annotated[Principal, Depends(principal)]


async def take_one(request: Request, who: Who) -> None:
    """The limiter dependency: what ``agent_runtime.api.limit_headers.check_request_limit`` does."""
    limiter: RequestLimiter = request.app.state.limiter
    started = time.perf_counter()
    decision = await limiter.check(who)
    request.app.state.check_ms.append((time.perf_counter() - started) * 1000)
    request.state.limit_headers = decision.headers()
    if not decision.allowed:
        raise refused(decision)


def build_app(limiter: RequestLimiter) -> FastAPI:
    app = FastAPI()
    app.state.limiter = limiter
    app.state.check_ms = []

    @app.get("/plain")
    async def plain(who: Who) -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    @app.get("/limited", dependencies=[Depends(take_one)])
    async def limited(request: Request, who: Who) -> Response:
        headers = request.state.limit_headers
        return Response(b'{"ok":true}', media_type="application/json", headers=headers)

    return app


@dataclass
class Result:
    requests: int
    plain_p50_ms: float
    plain_p99_ms: float
    limited_p50_ms: float
    limited_p99_ms: float
    added_p50_ms: float
    added_p99_ms: float
    check_p50_ms: float  # the limiter call alone, timed in the server
    round_trips_per_request: float
    server_scripts_per_request: float
    redis_server_us_per_call: float
    target_added_p50_ms: float
    target_round_trips: float
    target_met: bool
    python: str
    when: str


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def command_stats(client: Redis) -> tuple[int, float]:
    """(script calls, their total usec) from ``INFO commandstats``: EVALSHA and EVAL are
    the round trips; the commands a script runs inside are counted apart by Redis."""
    stats = await client.info("commandstats")
    script = [v for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")]
    return sum(int(v["calls"]) for v in script), sum(float(v["usec"]) for v in script)


def serve(redis_url: str, prefix: str, ready: Any) -> None:
    """The server process: both apps' routes on one uvicorn, the limiter on Redis."""
    client = make_redis_client(redis_url, 2.0)
    counter = CountingRedis(client)
    limiter = RequestLimiter(
        RedisTokenBucket(client, 1e9, 10**9, prefix=prefix),
        TenantLimitsCache(FixedLimits(), ttl_s=3600),
        default_rate_per_s=1e9,
        default_burst=10**9,
    )
    app = build_app(limiter)

    @app.get("/commands")
    async def commands() -> dict[str, float]:
        timed: list[float] = app.state.check_ms
        p50 = percentile(timed, 0.5) if timed else 0.0
        app.state.check_ms = []
        return {"commands": counter.commands, "check_p50_ms": p50}

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="critical", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        task = asyncio.ensure_future(server.serve())
        while not server.started:
            if task.done():
                ready.send(0)
                return
            await asyncio.sleep(0.01)
        ready.send(server.servers[0].sockets[0].getsockname()[1])
        await task

    asyncio.run(main())


@contextmanager
def server_process(redis_url: str, prefix: str) -> Iterator[str]:
    """The server in a process of its own, as the ingress is: the client's thread must not
    share its interpreter lock."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve, args=(redis_url, prefix, child), daemon=True)
    process.start()
    try:
        if not parent.poll(30) or not (port := parent.recv()):
            raise RuntimeError("the benchmark's server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.join(10)


def run(args: argparse.Namespace) -> Result:
    prefix = f"bench:rl:{uuid.uuid4().hex}:"
    loop = asyncio.new_event_loop()
    probe = make_redis_client(args.redis_url, 2.0)
    loop.run_until_complete(probe.ping())
    plain: list[float] = []
    limited: list[float] = []
    try:
        with server_process(args.redis_url, prefix) as url, httpx.Client(base_url=url) as http:
            for _ in range(args.warmup):
                http.get("/plain")
                http.get("/limited")
            before = loop.run_until_complete(command_stats(probe))
            sent_before = http.get("/commands").json()["commands"]
            for i in range(args.requests):
                # Alternate which goes first, so neither always follows the other.
                order = ("/plain", "/limited") if i % 2 == 0 else ("/limited", "/plain")
                for path in order:
                    started = time.perf_counter()
                    response = http.get(path)
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status_code != 200:
                        raise RuntimeError(f"{path}: HTTP {response.status_code}")
                    (plain if path == "/plain" else limited).append(elapsed)
            measured = http.get("/commands").json()
            sent = measured["commands"] - sent_before
            after = loop.run_until_complete(command_stats(probe))
        keys = loop.run_until_complete(_keys(probe, prefix))
        if keys:
            loop.run_until_complete(probe.delete(*keys))
    finally:
        loop.run_until_complete(probe.aclose())
        loop.close()
    scripts = after[0] - before[0]
    added_p50 = percentile(limited, 0.5) - percentile(plain, 0.5)
    round_trips = sent / args.requests
    return Result(
        requests=args.requests,
        plain_p50_ms=round(percentile(plain, 0.5), 3),
        plain_p99_ms=round(percentile(plain, 0.99), 3),
        limited_p50_ms=round(percentile(limited, 0.5), 3),
        limited_p99_ms=round(percentile(limited, 0.99), 3),
        added_p50_ms=round(added_p50, 3),
        added_p99_ms=round(percentile(limited, 0.99) - percentile(plain, 0.99), 3),
        check_p50_ms=round(measured["check_p50_ms"], 3),
        round_trips_per_request=round(round_trips, 3),
        server_scripts_per_request=round(scripts / args.requests, 3),
        redis_server_us_per_call=round((after[1] - before[1]) / max(1, scripts), 1),
        target_added_p50_ms=TARGET_ADDED_P50_MS,
        target_round_trips=TARGET_ROUND_TRIPS,
        target_met=added_p50 <= TARGET_ADDED_P50_MS and round_trips <= TARGET_ROUND_TRIPS,
        python=platform.python_version(),
        when=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


async def _keys(client: Redis, prefix: str) -> list[bytes]:
    return [key async for key in client.scan_iter(match=prefix + "*", count=1000)]


def report(result: Result) -> str:
    met = "met" if result.target_met else "NOT met"
    return "\n".join(
        [
            f"per-key limiter, {result.requests} requests each way, interleaved ({result.when})",
            f"  without: p50 {result.plain_p50_ms:.3f} ms, p99 {result.plain_p99_ms:.3f} ms",
            f"  with:    p50 {result.limited_p50_ms:.3f} ms, p99 {result.limited_p99_ms:.3f} ms",
            f"  added:   p50 {result.added_p50_ms:.3f} ms, p99 {result.added_p99_ms:.3f} ms "
            f"(target p50 <= {TARGET_ADDED_P50_MS} ms); the limiter call alone: p50 "
            f"{result.check_p50_ms:.3f} ms",
            f"  Redis round trips per request: {result.round_trips_per_request} (commands the "
            f"limiter sent), {result.server_scripts_per_request} (scripts Redis ran, all "
            f"clients); {result.redis_server_us_per_call} us of Redis time per script",
            f"  targets: {met}",
        ]
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument(
        "--redis-url", default=os.environ.get("AGENT_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        result = run(args)
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
        print(f"Redis unreachable ({type(exc).__name__})", file=sys.stderr)
        return 2
    print(report(result))
    if args.json:
        print(json.dumps(asdict(result)))
    return 0 if result.target_met else 1


if __name__ == "__main__":
    sys.exit(main())

"""``make bench-scaling``'s measuring parts, on real services but no Ray: the counters of
PostgreSQL and Redis, and the load with its meter against the baseline app (the same API,
one plain process) with the fake provider, both served here."""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable

import psutil
import psycopg
import redis
from fastapi import Request, Response

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.fake.provider_app import create_fake_provider_app
from loadtests.baseline_app import create_baseline_app, openai_models
from loadtests.bench_load import load
from loadtests.bench_scaling_costs import PostgresCounters, RedisCounters, StepMeter, deltas
from loadtests.bench_scaling_step import postgres_room, services_from_env
from tests.servers import served

STATS_WAIT_S = 5.0  # a backend reports its counters within a second of a transaction


class Ticking:
    """A counter that grows by one a reading."""

    def __init__(self) -> None:
        self.reads = 0.0

    def read(self) -> dict[str, float]:
        self.reads += 1
        return {"reads": self.reads}


class Down:
    def read(self) -> dict[str, float]:
        raise OSError("connection refused")


def test_postgres_counters_see_other_clients_transactions(postgres_url: str) -> None:
    counters = PostgresCounters(postgres_url)
    before = counters.read()
    assert before["connections"] >= 1  # this reading's own
    with psycopg.connect(postgres_url, autocommit=True) as db:
        for _ in range(3):
            db.execute("SELECT 1")
    deadline = time.monotonic() + STATS_WAIT_S
    grown = deltas(before, counters.read())
    while grown["transactions"] < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
        grown = deltas(before, counters.read())
    assert grown["transactions"] >= 3
    assert {"rows_written", "rows_read"} <= set(grown)


def test_redis_counters_count_commands_by_name(redis_url: str) -> None:
    counters = RedisCounters(redis_url)
    before = counters.read()
    client = redis.Redis.from_url(redis_url)
    try:
        client.set("bench-scaling:test", "1")
        client.delete("bench-scaling:test")
    finally:
        client.close()
    grown = deltas(before, counters.read())
    assert grown["commands"] >= 2
    assert grown["cmd:set"] >= 1 and grown["cmd:del"] >= 1


def test_services_are_read_only_where_configured(postgres_url: str, redis_url: str) -> None:
    assert services_from_env({}) == {}
    assert services_from_env({"AGENT_DATABASE_URL": "sqlite:///x.db"}) == {}
    both = services_from_env({"AGENT_DATABASE_URL": postgres_url, "AGENT_REDIS_URL": redis_url})
    assert sorted(both) == ["database", "redis"]
    assert postgres_room({}) is None
    room = postgres_room(both)
    assert room is not None and "connections to the database already open" in room, room


async def test_load_spreads_users_over_keys_and_meters_the_window() -> None:
    fake = create_fake_provider_app(
        FakeProviderSettings(
            latency_ms=20, jitter_ms=0, fail_rate=0, failing_models=[], hanging_models=[]
        )
    )
    keys_seen: set[str | None] = set()
    async with served(fake) as provider_url:
        baseline = create_baseline_app(openai_models(provider_url))

        @baseline.middleware("http")
        async def record_key(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            keys_seen.add(request.headers.get("x-api-key"))
            return await call_next(request)

        async with served(baseline) as baseline_url:
            me = psutil.Process()
            meter = StepMeter(
                {"client": lambda: [me], "server": lambda: [me]},
                lambda: [me],
                -1,  # no launcher: this process is "Ray's"
                {"ticking": Ticking(), "down": Down()},
            )
            result = await load(
                "baseline",
                baseline_url.removesuffix("/v1"),
                {"x-api-key": "unused"},
                argparse.Namespace(users=4, duration=2.0),
                meter,
                warmup_s=2.0,  # the first runs build the graph and its clients
                user_headers=[{"x-api-key": "k0"}, {"x-api-key": "k1"}],
            )
    assert result.runs > 0 and result.errors == 0, result.error_kinds
    assert keys_seen == {"k0", "k1"}
    assert meter.counted == {"ticking": {"reads": 1.0}}
    assert list(meter.failures) == ["down"] and "connection refused" in meter.failures["down"]
    assert list(meter.cpu_s_by_part) == ["Ray system"]
    assert meter.cpu_s_by_part["Ray system"] > 0

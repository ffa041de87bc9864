"""Push, not poll: how soon a wait hears that a run ended on another replica, and what idle
orchestrator replicas cost the database.

    python loadtests/bench_push.py [--runs 200] [--run-ms 20] [--idle-s 30] [--replicas 4]
                                   [--postgres-url URL] [--redis-url URL] [--json]

No Ray: each orchestrator replica is an ``Orchestration`` (what every Serve replica of the
orchestrator holds: its own pools, executor, run service and signals), several in this one
process, over one Postgres database made for the run (dropped afterwards, so its counters
are this benchmark's alone) and, for the push modes, one Redis channel of the run's own.

(a) Wait latency after the run's end. Replica B runs a one-node graph (a ``--run-ms``
sleep); replica A joins the run (``RunService.join``: the path of a ``runs/wait`` whose run
executes on another replica). Measured: from the moment B's ``RunStore.finish`` committed
the run's end to the moment A's join returned. Modes: ``poll`` (``AGENT_RUN_NOTIFY=false``,
``AGENT_RUN_FALLBACK_POLL_S=0.1``: the waiters' 0.1 s poll before notifications) and
``push`` (through Redis; the 2 s fallback).

(b) Idle database load: ``--replicas`` replicas started as the deployment starts them (run
queue and reaper, heartbeats, cron scheduler, TTL sweeper, the queue-depth gauge), no
traffic, ``--idle-s`` seconds after a warm-up. Counted: transactions committed in the
database (``pg_stat_database.xact_commit``; backends report within about a second) and
SQL statements the replicas sent (counted client-side by the telemetry sink). Modes:
``poll`` (notifications off, the old 0.5 s queue poll), ``push`` (Redis, 2 s fallback) and
``push-no-redis`` (in memory only, 2 s fallback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypedDict
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from langgraph.graph import END, START, StateGraph
from pydantic import SecretStr

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.config.run_settings import RunSettings
from agent_runtime.config.serve_settings import ServeSettings
from agent_runtime.config.settings import LimitSettings, RuntimeSettings, StorageSettings
from agent_runtime.core import telemetry
from agent_runtime.core.records import Principal, RunRecord, RunStatus
from agent_runtime.core.timing import RunTimings
from agent_runtime.core.types import ChatRequest, ChatResult
from agent_runtime.protocol.agent_protocol import RunCreate
from agent_runtime.replica.orchestration import Orchestration
from agent_runtime.runs.local_run import QueueStats
from agent_runtime.runs.run_queue import Finished, RunEnd
from agent_runtime.user_app.graph_loader import LoadedGraph

TENANT = Principal(tenant_id="bench-push", key_id="bench")
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
GRAPH = "sleep"
MODES = {
    # mode: (AGENT_RUN_NOTIFY, AGENT_RUN_FALLBACK_POLL_S for waits, for idle, Redis)
    "poll": (False, 0.1, 0.5, False),
    "push": (True, 2.0, 2.0, True),
    "push-no-redis": (True, 2.0, 2.0, False),
}


class State(TypedDict):
    n: int


def _graph(run_ms: float) -> LoadedGraph:
    async def sleep(state: State) -> dict[str, int]:
        await asyncio.sleep(run_ms / 1000)
        return {"n": state["n"] + 1}

    graph = StateGraph(State)
    graph.add_node("sleep", sleep)
    graph.add_edge(START, "sleep")
    graph.add_edge("sleep", END)
    return LoadedGraph.static(GRAPH, "one sleep", "bench", graph.compile(name=GRAPH))


async def _no_model(request: ChatRequest) -> ChatResult:
    raise AssertionError("the benchmark's graph calls no model")


async def _no_stream(request: ChatRequest) -> AsyncIterator[Any]:
    nothing: tuple[Any, ...] = ()
    for chunk in nothing:  # a generator that yields nothing before it fails
        yield chunk
    raise AssertionError("the benchmark's graph calls no model")


class Quiet:
    """The replica's observer, as the deployment's metrics (the queue gauge's query runs)."""

    def record_run(
        self, graph_id: str, status: RunStatus, duration_ms: float, timings: RunTimings
    ) -> None:
        pass

    def record_queue(self, stats: QueueStats) -> None:
        pass

    def record_judgement(self, graph_id: str, judgement: Any) -> None:
        pass

    def record_cron_failure(self, disabled: bool) -> None:
        pass

    def record_webhook(self, outcome: str) -> None:
        pass


class Statements:
    """The telemetry sink: counts what each system was sent."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def dependency_call(
        self, system: str, operation: str, latency_ms: float, error: str | None
    ) -> None:
        self.calls[system] += 1

    def checkpoint_write(self, operation: str, latency_ms: float) -> None:
        pass


@asynccontextmanager
async def scratch_database(admin_url: str) -> AsyncIterator[tuple[str, str]]:
    """(URL, name) of a database made for this run, dropped afterwards."""
    name = f"bench_push_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_url, timeout=10)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}")), name
    finally:
        await admin.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.close()


async def xact_commit(admin_url: str, name: str) -> int:
    admin = await asyncpg.connect(admin_url, timeout=10)
    try:
        value = await admin.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", name
        )
        return int(value)
    finally:
        await admin.close()


def settings(
    database_url: str, redis_url: str | None, channel: str, notify: bool, fallback_s: float
) -> RuntimeSettings:
    return RuntimeSettings(
        storage=StorageSettings(_env_file=None, database_url=database_url, db_pool_size=4),
        limits=LimitSettings(_env_file=None, redis_url=SecretStr(redis_url) if redis_url else None),
        provider=ProviderSettings(_env_file=None),
        fake=FakeProviderSettings(_env_file=None),
        serve=ServeSettings(_env_file=None),
        runs=RunSettings(
            _env_file=None,
            run_notify=notify,
            run_fallback_poll_s=fallback_s,
            run_notify_channel=channel,
        ),
    )


@asynccontextmanager
async def replicas(
    count: int, runtime: RuntimeSettings, run_ms: float, *, start: bool
) -> AsyncIterator[list[Orchestration]]:
    async with AsyncExitStack() as stack:
        built = []
        for _ in range(count):
            orchestration = await Orchestration.build(
                runtime, [_graph(run_ms)], _no_model, _no_stream, observer=Quiet()
            )
            stack.push_async_callback(orchestration.close)
            await orchestration.store.ensure_tenant(TENANT.tenant_id, "bench")
            if start:
                orchestration.start()
            built.append(orchestration)
        yield built


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def wait_latency(runtime: RuntimeSettings, runs: int, run_ms: float) -> dict[str, Any]:
    async with replicas(2, runtime, run_ms, start=True) as (a, b):
        ended: dict[str, float] = {}
        finish = b.runs.runs.finish

        async def timed_finish(run: RunRecord, end: RunEnd, worker_id: str) -> Finished:
            finished = await finish(run, end, worker_id)
            ended[run.run_id] = time.perf_counter()
            return finished

        b.runs.runs.finish = timed_finish  # type: ignore[method-assign]
        body = RunCreate.model_validate({"assistant_id": GRAPH, "input": {"n": 0}})
        latencies: list[float] = []
        for done in range(runs + 10):  # the first 10 warm up
            thread = await b.store.create_thread(TENANT.tenant_id)
            started = await b.runs.start(TENANT, thread.thread_id, body, "background")
            outcome = await a.runs.join(TENANT, thread.thread_id, started.run.run_id)
            answered = time.perf_counter()
            assert outcome.status == "success", outcome
            if done >= 10:
                latencies.append((answered - ended[started.run.run_id]) * 1000)
        # Only the queue loop's own watch may stay (none when notifications are off).
        left = a.signals.watching - (1 if a.signals.enabled else 0)
        subscribed = a.signals.subscriptions
    return {
        "runs": runs,
        "p50_ms": statistics.median(latencies),
        "p99_ms": _percentile(latencies, 0.99),
        "max_ms": max(latencies),
        "watches_left": left,
        "redis_subscriptions": subscribed,  # 0: Redis took no part (the poll mode)
    }


async def idle_load(
    runtime: RuntimeSettings, admin_url: str, name: str, count: int, idle_s: float, warmup_s: float
) -> dict[str, Any]:
    sink = Statements()
    async with replicas(count, runtime, 0, start=True) as stacks:
        await asyncio.sleep(warmup_s)  # every loop past its first tick
        telemetry.install(sink)
        before = await xact_commit(admin_url, name)
        await asyncio.sleep(idle_s)
        after = await xact_commit(admin_url, name)
        telemetry.install(None)
        dropped = sum(s.signals.dropped for s in stacks)
        pending = sum(s.signals.pending for s in stacks)
    return {
        "replicas": count,
        "seconds": idle_s,
        "xact_per_s": (after - before) / idle_s,
        "statements_per_s": sink.calls["postgres"] / idle_s,
        "redis_commands_per_s": sink.calls["redis"] / idle_s,
        "notifications_dropped": dropped,
        "notifications_pending": pending,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"wait": {}, "idle": {}}
    async with scratch_database(args.postgres_url) as (database_url, name):
        for mode, (notify, wait_s, idle_poll_s, redis) in MODES.items():
            redis_url = args.redis_url if redis else None
            channel = f"bench:runs:{uuid.uuid4().hex}"
            if mode != "push-no-redis":
                runtime = settings(database_url, redis_url, channel, notify, wait_s)
                print(f"(a) {mode}: {args.runs} joins across replicas ...", flush=True)
                results["wait"][mode] = await wait_latency(runtime, args.runs, args.run_ms)
                print(f"    {results['wait'][mode]}", flush=True)
            runtime = settings(database_url, redis_url, channel, notify, idle_poll_s)
            print(f"(b) {mode}: {args.replicas} idle replicas, {args.idle_s:g} s ...", flush=True)
            results["idle"][mode] = await idle_load(
                runtime, args.postgres_url, name, args.replicas, args.idle_s, args.warmup_s
            )
            print(f"    {results['idle'][mode]}", flush=True)
    return results


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    wait, idle = results["wait"], results["idle"]
    lines = [
        f"bench_push {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; run {args.run_ms:g} ms, {args.runs} joins per mode",
        "",
        "| wait after the run's end (another replica) | p50 | p99 | max |",
        "|---|---|---|---|",
    ]
    for mode, figures in wait.items():
        lines.append(
            f"| {mode} | {figures['p50_ms']:.1f} ms | {figures['p99_ms']:.1f} ms "
            f"| {figures['max_ms']:.1f} ms |"
        )
    lines += [
        "",
        f"| {args.replicas} idle replicas, {args.idle_s:g} s | transactions/s | "
        "statements/s | Redis commands/s |",
        "|---|---|---|---|",
    ]
    for mode, figures in idle.items():
        lines.append(
            f"| {mode} | {figures['xact_per_s']:.1f} | {figures['statements_per_s']:.1f} "
            f"| {figures['redis_commands_per_s']:.1f} |"
        )
    return "\n".join(lines)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="joins timed per mode")
    parser.add_argument("--run-ms", type=float, default=20.0, help="each run's sleep")
    parser.add_argument("--idle-s", type=float, default=30.0, help="idle window per mode")
    parser.add_argument("--replicas", type=int, default=4, help="idle orchestrator replicas")
    parser.add_argument("--warmup-s", type=float, default=3.0, help="idle, before counting")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("AGENT_TEST_POSTGRES_URL", POSTGRES_URL),
        help="a superuser's URL: the run makes (and drops) a database of its own beside it",
    )
    parser.add_argument("--redis-url", default=os.environ.get("AGENT_TEST_REDIS_URL", REDIS_URL))
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    figures = asyncio.run(main(arguments))
    print(report(figures, arguments))
    if arguments.json:
        print(json.dumps(figures))

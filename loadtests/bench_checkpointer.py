"""``make bench-checkpointer``: runs/s of one thread workload with and without checkpoints.

    python loadtests/bench_checkpointer.py [--users 32] [--duration 10] [--rounds 3]
                                           [--model-ms 100,0] [--postgres-url URL] [--json]

In one process and one run, the same workload runs under four checkpointers: none (the
graph compiled without one, every invocation a fresh run), LangGraph's ``InMemorySaver``,
the stock ``AsyncPostgresSaver`` over a psycopg pool, and the production path
(``agent_runtime.execution.checkpointers.Checkpointers``: the lock-free ``PooledPostgresSaver``
over the same kind of pool, inside ``TimedSaver``).

The workload: a router node and one of two specialist nodes, each an
``asyncio.sleep(model_ms)`` standing in for a model call, so one run is two "model calls"
(``--model-ms 0`` leaves only the graph's and the checkpointer's own cost). ``--users``
users each take a thread id and loop invocations on it, so a thread's history grows as in
``loadtests/bench.py``. The configurations take turns, ``--rounds`` times, so that other
work on a shared machine falls on all of them alike; in each turn, after a warm-up, the
runs that end within the next ``--duration / --rounds`` seconds count. Each Postgres
configuration gets a schema of its own, dropped afterwards, so the database is left as it
was found.

Prints a table (runs/s, p50 and p99 latency, ratio to no checkpointer) and, with
``--json``, the same figures as JSON. Exit status 0 when every run succeeded, 1 when some
failed, 2 when the benchmark could not run (Postgres down, for one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psutil
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from psycopg import AsyncConnection

from agent_runtime.core import timing

try:
    from loadtests.bench_checkpointer_configs import CONFIGS, build_graph, open_saver
    from loadtests.bench_checkpointer_results import (
        CPU_FIELDS,
        BenchResult,
        ConfigResult,
        CpuUse,
        WorkloadResult,
        percentile,
        render_table,
    )
except ModuleNotFoundError:  # run as a script (python loadtests/bench_checkpointer.py)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from loadtests.bench_checkpointer_configs import CONFIGS, build_graph, open_saver
    from loadtests.bench_checkpointer_results import (
        CPU_FIELDS,
        BenchResult,
        ConfigResult,
        CpuUse,
        WorkloadResult,
        percentile,
        render_table,
    )

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
WARMUP_S = 0.5  # before each round's window
ROUNDS = 3
SCHEMA_PREFIX = "bench_ckpt_"


# -- the load -----------------------------------------------------------------------------


async def measure(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    users: int,
    duration_s: float,
    warmup_s: float,
) -> tuple[list[float], list[str], CpuUse]:
    """Latencies (ms) of the runs that ended in the window, every error's repr, CPU use."""
    latencies: list[float] = []
    errors: list[str] = []
    begin = time.perf_counter()
    window_start, window_end = begin + warmup_s, begin + warmup_s + duration_s
    cpu = CpuUse()

    async def sample_cpu() -> None:
        await asyncio.sleep(warmup_s)
        process, before, wall = time.process_time(), psutil.cpu_times(), time.perf_counter()
        await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
        after = psutil.cpu_times()
        spent = {name: getattr(after, name) - getattr(before, name) for name in after._fields}
        total = sum(spent.values()) or 1.0
        idle = spent.get("idle", 0.0) + spent.get("iowait", 0.0)
        cpu.process_pct = 100 * (time.process_time() - process) / (time.perf_counter() - wall)
        cpu.machine_pct = 100 * (total - idle) / total
        cpu.steal_pct = 100 * spent.get("steal", 0.0) / total

    async def user() -> None:
        config: RunnableConfig = {"configurable": {"thread_id": f"bench-{uuid.uuid4().hex}"}}
        question = 0
        while time.perf_counter() < window_end:
            question += 1
            start = time.perf_counter()
            try:
                # As agent_runtime/runs/run_service.py runs a graph: inside a run's timings.
                with timing.track_run():
                    await graph.ainvoke({"messages": [f"question {question}"]}, config)
            except Exception as exc:
                errors.append(repr(exc))
                await asyncio.sleep(0.05)  # a broken configuration must not spin
                continue
            end = time.perf_counter()
            if window_start <= end <= window_end:
                latencies.append((end - start) * 1000)

    await asyncio.gather(sample_cpu(), *(user() for _ in range(users)))
    return latencies, errors, cpu


@dataclass
class _Tally:
    """One configuration's measurements, summed over its rounds."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cpu: list[CpuUse] = field(default_factory=list)

    def result(self, name: str, window_s: float) -> ConfigResult:
        rounds = len(self.cpu) or 1
        return ConfigResult(
            name=name,
            label=CONFIGS[name],
            runs=len(self.latencies),
            errors=len(self.errors),
            runs_per_s=len(self.latencies) / window_s,
            p50_ms=percentile(self.latencies, 50),
            p99_ms=percentile(self.latencies, 99),
            cpu=CpuUse(*(sum(getattr(c, f) for c in self.cpu) / rounds for f in CPU_FIELDS)),
            first_error=self.errors[0] if self.errors else None,
        )


async def run_workload(
    model_ms: float,
    *,
    users: int,
    duration_s: float,
    rounds: int,
    warmup_s: float,
    postgres_url: str,
    schema_prefix: str,
    progress: Callable[[str], None],
) -> WorkloadResult:
    """Every configuration on one workload, interleaved over ``rounds`` rounds.

    Each round gives every configuration ``duration_s / rounds`` seconds (after its own
    warm-up, with new threads), starting from a different one each round, so that other
    work on the machine falls on all of them alike rather than on one.
    """
    tallies = {name: _Tally() for name in CONFIGS}
    window_s = duration_s / rounds
    async with contextlib.AsyncExitStack() as stack:
        graphs = {
            name: build_graph(
                model_ms,
                await stack.enter_async_context(open_saver(name, postgres_url, schema_prefix)),
            )
            for name in CONFIGS
        }
        names = list(CONFIGS)
        for round_ in range(rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                gc.collect()
                latencies, errors, cpu = await measure(graphs[name], users, window_s, warmup_s)
                tally = tallies[name]
                tally.latencies += latencies
                tally.errors += errors
                tally.cpu.append(cpu)
                failed = f", {len(errors)} errors ({errors[0]})" if errors else ""
                progress(
                    f"  round {round_ + 1}/{rounds}, {model_ms:g} ms, {CONFIGS[name]}: "
                    f"{len(latencies) / window_s:.1f} runs/s, CPU {cpu.process_pct:.0f}% of a "
                    f"core, machine {cpu.machine_pct:.0f}%{failed}"
                )
    configs = [tallies[name].result(name, duration_s) for name in CONFIGS]
    baseline = configs[0].runs_per_s
    for config in configs:
        config.ratio = config.runs_per_s / baseline if baseline else 0.0
    return WorkloadResult(model_ms=model_ms, configs=configs)


async def run_benchmark(
    *,
    users: int = 32,
    duration_s: float = 10.0,
    rounds: int = ROUNDS,
    model_ms: Sequence[float] = (100.0, 0.0),
    postgres_url: str = DEFAULT_POSTGRES_URL,
    warmup_s: float = WARMUP_S,
    schema_prefix: str = SCHEMA_PREFIX,
    progress: Callable[[str], None] = lambda line: None,
) -> BenchResult:
    """Every configuration on every workload, in this process: one benchmark run."""
    result = BenchResult(
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        users=users,
        duration_s=duration_s,
        rounds=rounds,
        warmup_s=warmup_s,
        machine=await machine(postgres_url),
    )
    for ms in model_ms:
        workload = await run_workload(
            ms,
            users=users,
            duration_s=duration_s,
            rounds=rounds,
            warmup_s=warmup_s,
            postgres_url=postgres_url,
            schema_prefix=schema_prefix,
            progress=progress,
        )
        result.workloads.append(workload)
    return result


async def machine(postgres_url: str) -> dict[str, str]:
    async with await AsyncConnection.connect(postgres_url, connect_timeout=10) as conn:
        cursor = await conn.execute("SHOW server_version")
        row = await cursor.fetchone()
    versions = {
        name: importlib.metadata.version(name)
        for name in ("langgraph", "langgraph-checkpoint-postgres", "psycopg", "psycopg-pool")
    }
    return {
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "postgres": str(row[0]) if row else "?",
        **versions,
    }


# -- command line -------------------------------------------------------------------------


def _model_ms(value: str) -> list[float]:
    try:
        values = [float(part) for part in value.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a list of milliseconds: {value!r}") from error
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("model call latencies must be >= 0")
    return values


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=32, help="concurrent users (threads)")
    parser.add_argument("--duration", type=float, default=10.0, help="s per config, all rounds")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="configs take turns N times")
    parser.add_argument(
        "--model-ms",
        type=_model_ms,
        default=[100.0, 0.0],
        help="fake model call latency per node, ms; a comma list runs each (default 100,0)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("AGENT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a database this benchmark may create (and drop) schemas in",
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.users < 1 or args.duration <= 0 or args.rounds < 1:
        print("--users, --duration and --rounds must be positive", file=sys.stderr)
        return 2
    workloads = ", ".join(f"{ms:g} ms" for ms in args.model_ms)
    print(
        f"{len(CONFIGS)} checkpointers x model calls of {workloads}: {args.users} users, "
        f"{args.duration:g} s each in {args.rounds} rounds ({WARMUP_S:g} s warm-up a round)...",
        flush=True,
    )
    try:
        result = asyncio.run(
            run_benchmark(
                users=args.users,
                duration_s=args.duration,
                rounds=args.rounds,
                model_ms=args.model_ms,
                postgres_url=args.postgres_url,
                progress=lambda line: print(line, flush=True),
            )
        )
    except Exception as error:
        print(f"\nBenchmark failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    print(f"\nMachine: {json.dumps(result.machine)}\n")
    print(render_table(result))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    failed = any(c.errors for w in result.workloads for c in w.configs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

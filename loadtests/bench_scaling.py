"""``make bench-scaling``: runs/s of the local stack at 1, 2 and 4 orchestrator replicas, each
capped at a fixed number of runs at once, and what one run costs each part.

    python loadtests/bench_scaling.py [--replicas 1 2 4] [--cap 8] [--users-per-slot 2]
                                      [--duration 60] [--warmup 15]
                                      [--provider-latency-ms 1000] [--max-minutes 10]
                                      [--no-write]

For each replica count n, starts the stack as ``make bench`` does (``python -m
agent_runtime.cli.launch``, a fresh data dir, free ports, a standalone fake provider;
PostgreSQL and Redis when ``AGENT_DATABASE_URL`` / ``AGENT_REDIS_URL`` are set) with the
orchestrator fixed at n replicas of ``--cap`` runs each, lets ``users-per-slot x n x cap``
users loop ``runs/wait`` (each on a thread of its own), counts ``--duration`` seconds after
``--warmup``, then stops it. The provider's latency (1 s a call) keeps the machine's CPU
from being the limit until it is. Measures runs/s, p50/p99, errors, the machine's CPU, the
CPU each deployment spent per run, and the database's transactions and Redis's commands
per run. Prints the tables, writes ``loadtests/results/bench-scaling.json`` and rewrites
its two sections of ``docs/scaling.md``. Exit status: 0 when every step was measured (or
skipped by ``--max-minutes``), 2 when one failed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

try:
    from loadtests.bench import _interrupt
    from loadtests.bench_phases import Bench
    from loadtests.bench_processes import REPO_ROOT, StartFailed, machine
    from loadtests.bench_scaling_report import (
        DOC,
        ScalingResult,
        ScalingSettings,
        render_terminal,
        write_doc,
    )
    from loadtests.bench_scaling_step import Step, step_users, uninterrupted, users_per_tenant
except ModuleNotFoundError:  # run as a script (python loadtests/bench_scaling.py)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from loadtests.bench import _interrupt
    from loadtests.bench_phases import Bench
    from loadtests.bench_processes import REPO_ROOT, StartFailed, machine
    from loadtests.bench_scaling_report import (
        DOC,
        ScalingResult,
        ScalingSettings,
        render_terminal,
        write_doc,
    )
    from loadtests.bench_scaling_step import Step, step_users, uninterrupted, users_per_tenant

RESULTS = REPO_ROOT / "loadtests" / "results" / "bench-scaling.json"
# A step's time besides its load: the stack's start, tenants and threads, its stop.
STEP_OVERHEAD_S = 60.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--replicas", type=int, nargs="+", default=[1, 2, 4], help="orchestrator replica counts"
    )
    parser.add_argument("--cap", type=int, default=8, help="runs one replica takes at once")
    parser.add_argument(
        "--users-per-slot", type=float, default=2.0, help="users = this x replicas x cap"
    )
    parser.add_argument("--duration", type=float, default=60.0, help="counted window, s")
    parser.add_argument("--warmup", type=float, default=15.0, help="load before the window, s")
    parser.add_argument("--provider-latency-ms", type=float, default=1000.0, help="per call")
    parser.add_argument("--ingress-replicas", type=int, default=1, help="fixed")
    parser.add_argument("--router-replicas", type=int, default=1, help="fixed")
    parser.add_argument(
        "--max-minutes", type=float, default=10.0, help="steps that would end later are skipped"
    )
    parser.add_argument("--port", type=int, default=0, help="the stack's HTTP port (0: free)")
    parser.add_argument("--no-write", action="store_true", help="leave docs/scaling.md alone")
    return parser


def problems(args: argparse.Namespace) -> list[str]:
    """What is wrong with the arguments, as sentences."""
    found = []
    if any(n < 1 for n in args.replicas) or args.replicas != sorted(set(args.replicas)):
        found.append("--replicas must be positive and increasing, e.g. 1 2 4")
    if args.cap < 3:
        found.append("--cap must be at least 3 (a tenant's open streams must stay below it)")
    if args.users_per_slot <= 0 or args.duration <= 0 or args.warmup < 0:
        found.append("--users-per-slot and --duration must be positive, --warmup not negative")
    if args.provider_latency_ms < 0 or args.max_minutes <= 0:
        found.append("--provider-latency-ms must not be negative, --max-minutes positive")
    if min(args.ingress_replicas, args.router_replicas) < 1:
        found.append("--ingress-replicas and --router-replicas must be positive")
    return found


def command_line(args: argparse.Namespace) -> str:
    words = ["python", "loadtests/bench_scaling.py", "--replicas", *map(str, args.replicas)]
    for flag in ("cap", "users_per_slot", "duration", "warmup", "provider_latency_ms"):
        words += [f"--{flag.replace('_', '-')}", f"{getattr(args, flag):g}"]
    for flag in ("ingress_replicas", "router_replicas"):
        if getattr(args, flag) != 1:
            words += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return shlex.join(words)


def step_seconds(args: argparse.Namespace) -> float:
    return STEP_OVERHEAD_S + args.warmup + args.duration


def settings(args: argparse.Namespace) -> ScalingSettings:
    return ScalingSettings(
        replicas=args.replicas,
        cap=args.cap,
        users_per_slot=args.users_per_slot,
        users_per_tenant=users_per_tenant(args.cap),
        duration_s=args.duration,
        warmup_s=args.warmup,
        provider_latency_ms=args.provider_latency_ms,
        ingress_replicas=args.ingress_replicas,
        router_replicas=args.router_replicas,
        storage="PostgreSQL" if os.environ.get("AGENT_DATABASE_URL") else "SQLite (embedded)",
        limiter="Redis" if os.environ.get("AGENT_REDIS_URL") else "in-process",
    )


def measure(args: argparse.Namespace, work: Path, result: ScalingResult) -> None:
    """Every step in turn, appended to ``result`` as it ends (what ended stays measured
    when a later step fails or the run is interrupted)."""
    provider = Bench(args, work)
    try:
        provider.start_provider()
        assert provider.provider is not None and provider.provider_url is not None
        provider_proc = psutil.Process(provider.provider.pid)
        deadline = time.monotonic() + args.max_minutes * 60
        for index, replicas in enumerate(args.replicas):
            if time.monotonic() + step_seconds(args) > deadline:
                result.skipped = args.replicas[index:]
                print(f"Skipping {result.skipped} replicas: past --max-minutes.", flush=True)
                break
            print(
                f"[{index + 1}/{len(args.replicas)}] {replicas} orchestrator replica(s), "
                f"{step_users(args, replicas)} users...",
                flush=True,
            )
            step = Step(args, work / f"n{replicas}", replicas, provider.provider_url)
            result.steps.append(step.run(provider_proc, provider.check_alive))
            print(f"  {replicas} replica(s): {_summary(result)}", flush=True)
    finally:
        with uninterrupted():
            provider.stop_all()


def _summary(result: ScalingResult) -> str:
    step = result.steps[-1]
    efficiency = result.efficiency(step)
    return (
        f"{step.load.runs_per_s:.2f} runs/s, p50 {step.load.p50_ms or 0:.0f} ms, "
        f"p99 {step.load.p99_ms or 0:.0f} ms, {step.load.errors} errors, machine "
        f"{step.load.machine_cpu_pct:.0f}% busy"
        + (f", efficiency {efficiency:.2f}" if efficiency is not None else "")
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    wrong = problems(args)
    if wrong:
        print("\n".join(wrong), file=sys.stderr)
        return 2
    planned = len(args.replicas) * step_seconds(args) / 60
    print(
        f"Scaling: orchestrator at {args.replicas} replicas, {args.cap} runs each, provider "
        f"{args.provider_latency_ms:g} ms a call; about {planned:.0f} min "
        f"(at most {args.max_minutes:g}).",
        flush=True,
    )
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    # A short path: Ray's unix sockets live under it, and their paths are length-limited.
    work = Path(tempfile.mkdtemp(prefix="scale-", dir="/tmp" if Path("/tmp").is_dir() else None))
    host = machine(str(work / "none"))  # every raylet now is another cluster's
    if host.foreign_ray_clusters:
        print(f"WARNING: {host.foreign_ray_clusters} other Ray cluster(s) on this machine")
    result = ScalingResult(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=command_line(args),
        machine=host,
        settings=settings(args),
        steps=[],
    )
    status = 0
    try:
        measure(args, work, result)
    except (StartFailed, httpx.HTTPError) as error:
        print(f"\nBenchmark failed: {error}", file=sys.stderr)
        status = 2
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        status = 130
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not result.steps:
        return status or 2
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(result.model_dump_json(indent=2) + "\n")
    print("\n" + render_terminal(result) + "\n")
    print(f"Wrote {RESULTS.relative_to(REPO_ROOT)}")
    # A partial run is printed and kept in the JSON, but does not replace the doc's figures.
    if status == 0 and not args.no_write:
        write_doc(result)
        print(f"Updated {DOC.relative_to(REPO_ROOT)}")
    return status


if __name__ == "__main__":
    sys.exit(main())

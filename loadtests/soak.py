"""``make soak MINUTES=30``: the local stack under a steady, moderate load for a long while,
watched for leaks and drift.

    python loadtests/soak.py [--minutes 30] [--users 8] [--provider-latency-ms 50]
                             [--sample-s 15] [--no-write]

Starts the stack as ``make run`` does (as ``make bench`` does: fresh data dir, free ports,
a standalone fake provider at a fixed latency; PostgreSQL and Redis when
``AGENT_DATABASE_URL`` / ``AGENT_REDIS_URL`` are set), lets ``--users`` clients loop
``runs/wait`` on threads of their own for ``--minutes``, samples every process's RSS each
``--sample-s``, prints progress each minute, then judges the targets of
:mod:`loadtests.soak_report`, rewrites its section of ``docs/reliability.md`` and draws
``docs/img/soak.png``. Exit status: 0 when measured (met or not), 2 when the stack failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

try:
    from loadtests.bench_load import REQUEST_TIMEOUT_S, loop_runs, new_thread
    from loadtests.bench_phases import Bench, stack_env
    from loadtests.bench_processes import Child, StartFailed, process_kind, stack_processes
    from loadtests.soak_report import Sample, Soak, render, write_doc, write_png
except ModuleNotFoundError:  # run as a script (python loadtests/soak.py)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from loadtests.bench_load import REQUEST_TIMEOUT_S, loop_runs, new_thread
    from loadtests.bench_phases import Bench, stack_env
    from loadtests.bench_processes import Child, StartFailed, process_kind, stack_processes
    from loadtests.soak_report import Sample, Soak, render, write_doc, write_png

WARMUP_MAX_S = 300.0  # five minutes, or a sixth of a shorter soak
WINDOW_MAX_S = 300.0  # the p99 windows compared: five minutes, or a third of what is left


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the load runs")
    parser.add_argument("--users", type=int, default=8, help="concurrent users (moderate)")
    parser.add_argument("--provider-latency-ms", type=float, default=50.0, help="per call")
    parser.add_argument("--sample-s", type=float, default=15.0, help="RSS sampling interval")
    parser.add_argument("--port", type=int, default=0, help="the stack's HTTP port (0: free)")
    parser.add_argument("--no-write", action="store_true", help="leave the docs alone")
    return parser


def sample(launcher_pid: int, marker: str, at_s: float) -> Sample:
    """RSS of each of the stack's processes, labelled by kind and pid."""
    rss: dict[str, float] = {}
    for proc in stack_processes(launcher_pid, marker)[0]:
        try:
            label = f"{process_kind(proc, launcher_pid)} [{proc.pid}]"
            rss[label] = proc.memory_info().rss / 2**20
        except psutil.Error:  # gone meanwhile
            continue
    return Sample(at_s, rss)


async def soak_load(
    url: str, headers: dict[str, str], soak: Soak, bench: Bench, launcher: Child, sample_s: float
) -> None:
    """The users, the sampler and the progress line, for ``soak.minutes``."""
    limits = httpx.Limits(max_connections=soak.users + 4)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=REQUEST_TIMEOUT_S, limits=limits
    ) as client:
        threads = await asyncio.gather(*(new_thread(client) for _ in range(soak.users)))
        start = time.perf_counter()
        end = start + soak.minutes * 60

        async def sampler() -> None:
            minute = 0
            while time.perf_counter() < end:
                at = time.perf_counter() - start
                taken = await asyncio.to_thread(sample, launcher.pid, bench.marker, at)
                soak.samples.append(taken)
                if at >= minute * 60:
                    minute += 1
                    bench.check_alive("the soak")
                    last = soak.latencies(at - 60, at + 1)
                    print(
                        f"  {at / 60:4.1f} min: {len(soak.ended)} runs, "
                        f"{sum(soak.errors().values())} errors, last minute p99 "
                        f"{sorted(last)[int(len(last) * 0.99)] if last else 0:.0f} ms, "
                        f"RSS {sum(taken.rss_mib.values()) / 1024:.2f} GiB",
                        flush=True,
                    )
                await asyncio.sleep(min(sample_s, max(0.0, end - time.perf_counter())))
            soak.samples.append(
                await asyncio.to_thread(sample, launcher.pid, bench.marker, end - start)
            )

        users = (
            loop_runs(client, t, i, until=end, ended=soak.ended, step=soak.users, origin=start)
            for i, t in enumerate(threads)
        )
        await asyncio.gather(sampler(), *users)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    total_s = args.minutes * 60
    warmup_s = min(WARMUP_MAX_S, total_s / 6)
    soak = Soak(
        command=f"make soak MINUTES={args.minutes:g}",
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        minutes=args.minutes,
        users=args.users,
        storage=" + ".join(
            [
                "PostgreSQL" if os.environ.get("AGENT_DATABASE_URL") else "SQLite (embedded)",
                "Redis" if os.environ.get("AGENT_REDIS_URL") else "in-process limits",
            ]
        ),
        warmup_s=warmup_s,
        window_s=min(WINDOW_MAX_S, (total_s - warmup_s) / 3),
    )
    with tempfile.TemporaryDirectory(prefix="agent-soak-") as folder:
        work = Path(folder)
        (work / "ray").mkdir()
        bench = Bench(args, work)
        try:
            bench.start_provider()
            env = stack_env(args, work, bench.provider_url)
            url = f"http://127.0.0.1:{env['AGENT_HTTP_PORT']}"
            print(f"Starting the stack at {url}...", flush=True)
            launcher = bench.start(Child.module("launcher", work, env, "agent_runtime.cli.launch"))
            launcher.wait_ready(f"{url}/ok")
            headers = {"x-api-key": (work / "data" / "dev-api-key").read_text().strip()}
            print(
                f"Soak: {args.users} users for {args.minutes:g} min "
                f"(warm-up {warmup_s / 60:g} min)...",
                flush=True,
            )
            asyncio.run(soak_load(url, headers, soak, bench, launcher, args.sample_s))
        except StartFailed as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 2
        finally:
            bench.stop_all()
    print(render(soak))
    if not args.no_write:
        write_doc(soak)
        write_png(soak)
        print("wrote docs/reliability.md (its soak section) and docs/img/soak.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

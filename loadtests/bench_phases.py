"""``make bench``'s run, phase by phase: the fake provider, the stack's cold start, its idle
memory, the overhead runs, then the throughput of the stack and of the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import psutil

from loadtests.bench_figures import BenchResult, ColdStart, RunSettings, Throughput
from loadtests.bench_load import LOAD_WARMUP_S, WARMUP_RUNS, load, measure_overhead
from loadtests.bench_processes import (
    Child,
    CpuMeter,
    ProcessGroup,
    StartFailed,
    free_port,
    machine,
    measure_memory,
    stack_processes,
    sweep,
)
from loadtests.bench_report import command_line

UNLIMITED = "100000"  # rate limit per second and burst: the limiter never refuses
IDLE_S = 5.0


def stack_env(args: argparse.Namespace, work: Path, provider_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    # The fake provider and its default model chains, whatever this shell points at.
    for name in ("AGENT_PROVIDER_BASE_URL", "AGENT_PROVIDER_API_KEY", "AGENT_MODEL_ALIASES"):
        env.pop(name, None)
    if provider_url is not None:
        env["AGENT_PROVIDER_BASE_URL"] = provider_url
    env.update(
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        # Ray's session files under this run's folder: they name its processes, then go.
        RAY_TMPDIR=str(work / "ray"),
        AGENT_DATA_DIR=str(work / "data"),
        AGENT_HTTP_HOST="127.0.0.1",
        AGENT_HTTP_PORT=str(args.port or free_port()),
        AGENT_METRICS_PORT=str(free_port()),
        AGENT_FAKE_LATENCY_MS=f"{args.provider_latency_ms:g}",
        AGENT_FAKE_JITTER_MS="0",
        AGENT_FAKE_FAIL_RATE="0",
        AGENT_FAKE_FAILING_MODELS="[]",
        AGENT_FAKE_HANGING_MODELS="[]",
        AGENT_RATE_LIMIT_PER_SECOND=UNLIMITED,
        AGENT_RATE_LIMIT_BURST=UNLIMITED,
        # --users users of one tenant: its run limits must not cap the load either.
        AGENT_MAX_CONCURRENT_RUNS="none",
        AGENT_MAX_QUEUED_RUNS="none",
    )
    return env


class Bench:
    """One benchmark run: the processes it started and the figures measured so far."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.marker = str(work / "ray")
        self.children: list[Child] = []
        self.provider: Child | None = None
        self.provider_url: str | None = None
        self.stack_stopped = False

    def start(self, child: Child) -> Child:
        self.children.append(child)
        return child

    def check_alive(self, during: str) -> None:
        for child in self.children:
            if child.name != "launcher" or not self.stack_stopped:
                child.check_alive(during)

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()
        left = sweep(self.marker)
        if left:
            print(f"  stopped {left} Ray process(es) that outlived the launcher")

    def start_provider(self) -> None:
        port, latency = free_port(), f"{self.args.provider_latency_ms:g}"
        print(f"Starting the fake provider ({latency} ms per call)...", flush=True)
        self.provider = self.start(
            Child.module(
                "fake provider",
                self.work,
                os.environ,
                "loadtests.baseline_app",
                "--fake-provider",
                "--port",
                str(port),
                "--latency-ms",
                latency,
            )
        )
        self.provider_url = f"http://127.0.0.1:{port}/v1"
        self.provider.wait_ready(f"{self.provider_url}/models")

    def run(self) -> BenchResult:
        args = self.args
        (self.work / "ray").mkdir()
        host = machine(self.marker)
        if host.foreign_ray_clusters:
            print(f"WARNING: {host.foreign_ray_clusters} other Ray cluster(s) on this machine")
        if args.provider == "standalone":
            self.start_provider()
        env = stack_env(args, self.work, self.provider_url)
        url = f"http://127.0.0.1:{env['AGENT_HTTP_PORT']}"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", int(env["AGENT_HTTP_PORT"]))) == 0:
                # Something else answers there: /ok would time the wrong server.
                raise StartFailed(f"port {env['AGENT_HTTP_PORT']} is already in use")

        print(f"1/4 Cold start: python -m agent_runtime.cli.launch, {url}...", flush=True)
        started = time.monotonic()
        launcher = self.start(Child.module("launcher", self.work, env, "agent_runtime.cli.launch"))
        launcher.wait_ready(f"{url}/ok")
        cold = ColdStart(seconds=time.monotonic() - started)
        print(f"  first 200 on /ok after {cold.seconds:.1f} s", flush=True)
        headers = {"x-api-key": (self.work / "data" / "dev-api-key").read_text().strip()}

        print(f"2/4 Idle memory after {IDLE_S:g} s idle...", flush=True)
        stack: ProcessGroup = lambda: stack_processes(launcher.pid, self.marker)[0]  # noqa: E731
        meter = CpuMeter({"stack": stack})
        meter.start()
        time.sleep(IDLE_S)
        memory = measure_memory(launcher.pid, self.marker, meter.stop()["stack"])
        print(
            f"  {memory.rss_gib:.2f} GiB RSS, {memory.processes} processes "
            f"({memory.outside_launcher_tree} outside the launcher's tree)",
            flush=True,
        )

        print(f"3/4 Overhead: {WARMUP_RUNS} warm-up + {args.runs} sequential runs...", flush=True)
        overhead = asyncio.run(measure_overhead(url, headers, args.runs))
        self.check_alive("the overhead runs")
        print(f"  overhead p50 {overhead.p50_ms:.1f} ms, p99 {overhead.p99_ms:.1f} ms", flush=True)

        throughput = None
        if not args.skip_throughput:
            throughput = self.throughput(launcher, url, headers, stack)
        return BenchResult(
            date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            command=command_line(args),
            machine=host,
            settings=RunSettings(
                runs=args.runs,
                warmup_runs=WARMUP_RUNS,
                users=args.users,
                duration_s=args.duration,
                load_warmup_s=LOAD_WARMUP_S,
                provider_latency_ms=args.provider_latency_ms,
                provider=args.provider,
                storage="Postgres" if env.get("AGENT_DATABASE_URL") else "SQLite (embedded)",
                limiter="Redis" if env.get("AGENT_REDIS_URL") else "in-process",
            ),
            cold_start=cold,
            idle_memory=memory,
            overhead=overhead,
            throughput=throughput,
        )

    def throughput(
        self, launcher: Child, url: str, headers: Mapping[str, str], stack: ProcessGroup
    ) -> Throughput:
        args = self.args
        print(
            f"4/4 Throughput: {args.users} users, {LOAD_WARMUP_S:g} s warm-up + "
            f"{args.duration:g} s, the stack then the baseline...",
            flush=True,
        )
        me = psutil.Process()
        groups: dict[str, ProcessGroup] = {"client": lambda: [me]}
        if self.provider is not None:
            provider = psutil.Process(self.provider.pid)
            groups["provider"] = lambda: [provider]
        ours = asyncio.run(load("ours", url, headers, args, CpuMeter({**groups, "server": stack})))
        self.check_alive("the load on the stack")
        if self.provider is not None:
            # The provider lives outside the stack: the baseline gets the machine to itself,
            # as the stack had it, instead of sharing the CPUs with an idle Ray cluster.
            print("  stopping the stack before the baseline...", flush=True)
            launcher.stop()
            sweep(self.marker)
            self.stack_stopped = True
        port = free_port()
        provider_url = self.provider_url or f"{url}/fake-provider/v1"
        baseline = self.start(
            Child.module(
                "baseline",
                self.work,
                os.environ,
                "loadtests.baseline_app",
                "--port",
                str(port),
                "--provider-url",
                provider_url,
            )
        )
        base_url = f"http://127.0.0.1:{port}"
        baseline.wait_ready(f"{base_url}/ok")
        server = psutil.Process(baseline.pid)
        meter = CpuMeter({**groups, "server": lambda: [server]})
        base = asyncio.run(load("baseline", base_url, {}, args, meter))
        self.check_alive("the load on the baseline")
        return Throughput(ours=ours, baseline=base)

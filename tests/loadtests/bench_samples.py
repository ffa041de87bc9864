"""A ``make bench`` result with made-up figures, for the figures' and the report's tests."""

from __future__ import annotations

from loadtests.bench_figures import (
    BenchResult,
    ColdStart,
    IdleMemory,
    LoadResult,
    Machine,
    Overhead,
    RunSettings,
    ServerTiming,
    Throughput,
)


def sample_machine() -> Machine:
    return Machine(
        cpus=2,
        ram_gib=23.5,
        cpu_model="Test CPU",
        python="3.11.7",
        ray="2.60.0",
        foreign_ray_clusters=0,
        load_average=0.3,
    )


def load_result(system: str, runs_per_s: float, server_cpu: float) -> LoadResult:
    return LoadResult(
        system=system,
        users=32,
        duration_s=30.0,
        runs=int(runs_per_s * 30),
        errors=0,
        runs_per_s=runs_per_s,
        p50_ms=400.0,
        p99_ms=900.0,
        client_cpu_pct=12.0,
        server_cpu_pct=server_cpu,
        provider_cpu_pct=6.0,
        machine_cpu_pct=97.0,
        other_cpu_pct=3.0,
        server_processes=(13, 15) if system == "ours" else (1, 1),
    )


def bench_result(*, with_throughput: bool = True) -> BenchResult:
    runs = [
        (
            170.0 + i,
            ServerTiming(provider=104, router=121, checkpoint=6, orchestrator=158, graph=139),
        )
        for i in range(20)
    ]
    throughput = Throughput(
        ours=load_result("ours", 18.0, 150.0), baseline=load_result("baseline", 40.0, 95.0)
    )
    return BenchResult(
        date="2026-01-02 03:04 UTC",
        command="python loadtests/bench.py --runs 20",
        machine=sample_machine(),
        settings=RunSettings(
            runs=20,
            warmup_runs=10,
            users=32,
            duration_s=30,
            load_warmup_s=5,
            provider_latency_ms=50,
            provider="standalone",
            storage="SQLite (embedded)",
            limiter="in-process",
        ),
        cold_start=ColdStart(seconds=12.34),
        idle_memory=IdleMemory(
            rss_gib=1.71,
            pss_gib=1.19,
            processes=13,
            outside_launcher_tree=0,
            idle_cpu_pct=8.0,
            rss_mib_by_kind={"raylet": 31.0, "ray::ServeReplica:agent-runtime:Ingress": 228.0},
        ),
        overhead=Overhead.from_runs(runs),
        throughput=throughput if with_throughput else None,
    )

"""``make bench``'s figures: Server-Timing parsed, percentiles, a run's hop breakdown, and the
result models with their targets, which the report renders and ``bench.json`` holds.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field, computed_field

TARGET_COLD_START_S = 15.0
TARGET_IDLE_GIB = 1.5
TARGET_OVERHEAD_P50_MS = 15.0
TARGET_RATIO = 0.5

# -- pure parts: Server-Timing, percentiles, the hop breakdown ---------------------------

_DUR = re.compile(r"(?:^|;)\s*dur=([0-9.eE+-]+)")


def parse_server_timing(header: str) -> dict[str, float]:
    """``name;dur=ms, ...`` -> ``{name: ms}``; entries without ``dur`` are left out."""
    parts: dict[str, float] = {}
    for entry in header.split(","):
        name, _, params = entry.strip().partition(";")
        match = _DUR.search(params)
        if name and match:
            parts[name.strip()] = float(match.group(1))
    return parts


class ServerTiming(BaseModel):
    """The runtime's ``Server-Timing`` of one run, in ms (see
    ``agent_runtime/api/routes/assistant_routes.py``)."""

    provider: float
    router: float
    checkpoint: float
    orchestrator: float
    graph: float

    @classmethod
    def from_header(cls, header: str) -> ServerTiming:
        return cls.model_validate(parse_server_timing(header))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), interpolating linearly between ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


HOP_LABELS = {
    "client_ingress": "client -> ingress -> back (HTTP proxy, auth, limits, FastAPI)",
    "ingress_orchestrator": "ingress -> orchestrator hop + run bookkeeping",
    "graph": "graph, excluding router calls and checkpoints",
    "router": "router hop + router internals",
    "provider": "provider calls",
    "checkpoint": "checkpoint writes",
}


class HopBreakdown(BaseModel):
    """One run's client latency split by hop, in ms; the parts add up to the latency."""

    client_ingress: float
    ingress_orchestrator: float
    graph: float
    router: float
    provider: float
    checkpoint: float

    @classmethod
    def from_run(cls, client_ms: float, timing: ServerTiming) -> HopBreakdown:
        return cls(
            client_ingress=client_ms - timing.orchestrator,
            ingress_orchestrator=timing.orchestrator - timing.graph,
            graph=timing.graph - timing.router - timing.checkpoint,
            router=timing.router - timing.provider,
            provider=timing.provider,
            checkpoint=timing.checkpoint,
        )

    @property
    def total(self) -> float:
        return sum(self.model_dump().values())

    @property
    def overhead(self) -> float:
        """Everything but the provider's own time."""
        return self.total - self.provider

    @classmethod
    def aggregate(
        cls, runs: Sequence[HopBreakdown], how: Literal["median", "mean"]
    ) -> HopBreakdown:
        """Each part's median (parts then do not add up) or mean (they do)."""
        reduce = statistics.median if how == "median" else statistics.fmean
        return cls(**{name: reduce([getattr(r, name) for r in runs]) for name in HOP_LABELS})


# -- results ---------------------------------------------------------------------------


class ColdStart(BaseModel):
    seconds: float
    target_s: float = TARGET_COLD_START_S

    @computed_field  # type: ignore[prop-decorator]
    @property
    def met(self) -> bool:
        return self.seconds <= self.target_s


class IdleMemory(BaseModel):
    rss_gib: float
    pss_gib: float | None
    processes: int
    outside_launcher_tree: int = Field(description="Ray processes not descending from it.")
    idle_cpu_pct: float = Field(description="The idle stack's CPU, % of one core.")
    rss_mib_by_kind: dict[str, float]
    target_gib: float = TARGET_IDLE_GIB

    @computed_field  # type: ignore[prop-decorator]
    @property
    def met(self) -> bool:
        return self.rss_gib <= self.target_gib


class Overhead(BaseModel):
    runs: int
    errors: int
    error_kinds: dict[str, int] = Field(default_factory=dict)
    p50_ms: float
    p99_ms: float
    latency_p50_ms: float
    latency_p99_ms: float
    median: HopBreakdown
    mean: HopBreakdown
    target_p50_ms: float = TARGET_OVERHEAD_P50_MS

    @computed_field  # type: ignore[prop-decorator]
    @property
    def met(self) -> bool:
        return self.p50_ms <= self.target_p50_ms

    @classmethod
    def from_runs(
        cls, runs: Sequence[tuple[float, ServerTiming]], errors: Sequence[str] = ()
    ) -> Overhead:
        hops = [HopBreakdown.from_run(client_ms, timing) for client_ms, timing in runs]
        overheads = [hop.overhead for hop in hops]
        latencies = [client_ms for client_ms, _ in runs]
        return cls(
            runs=len(runs),
            errors=len(errors),
            error_kinds=dict(Counter(errors)),
            p50_ms=percentile(overheads, 50),
            p99_ms=percentile(overheads, 99),
            latency_p50_ms=percentile(latencies, 50),
            latency_p99_ms=percentile(latencies, 99),
            median=HopBreakdown.aggregate(hops, "median"),
            mean=HopBreakdown.aggregate(hops, "mean"),
        )


class LoadResult(BaseModel):
    system: str
    users: int
    duration_s: float
    runs: int
    errors: int
    error_kinds: dict[str, int] = Field(default_factory=dict)
    runs_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    client_cpu_pct: float = Field(description="This script's CPU, % of one core.")
    server_cpu_pct: float = Field(description="The system under test's CPU, % of one core.")
    provider_cpu_pct: float | None = Field(description="The standalone fake provider's CPU.")
    machine_cpu_pct: float = Field(description="All cores busy, %.")
    other_cpu_pct: float = Field(description="Processes not part of the test, % of one core.")
    server_processes: tuple[int, int] = Field(description="At the window's start and end.")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def server_cpu_ms_per_run(self) -> float | None:
        if not self.runs:
            return None
        return self.server_cpu_pct / 100 * self.duration_s * 1000 / self.runs


class Throughput(BaseModel):
    ours: LoadResult
    baseline: LoadResult
    target_ratio: float = TARGET_RATIO

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ratio(self) -> float:
        if self.baseline.runs_per_s == 0:
            return 0.0
        return self.ours.runs_per_s / self.baseline.runs_per_s

    @computed_field  # type: ignore[prop-decorator]
    @property
    def met(self) -> bool:
        return self.ratio >= self.target_ratio and self.ours.errors == 0


class Machine(BaseModel):
    cpus: int
    ram_gib: float
    cpu_model: str
    python: str
    ray: str
    foreign_ray_clusters: int = Field(description="Other raylets running on the machine.")
    load_average: float = Field(description="1-minute load average when the run started.")


class RunSettings(BaseModel):
    runs: int
    warmup_runs: int
    users: int
    duration_s: float
    load_warmup_s: float
    provider_latency_ms: float
    provider: Literal["standalone", "stack"]
    storage: str
    limiter: str


class BenchResult(BaseModel):
    date: str
    command: str
    machine: Machine
    settings: RunSettings
    cold_start: ColdStart
    idle_memory: IdleMemory
    overhead: Overhead
    throughput: Throughput | None = None

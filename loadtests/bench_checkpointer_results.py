"""``make bench-checkpointer``'s results: each configuration's figures per workload, the
target, and the table they print as.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from loadtests.bench_checkpointer_configs import OURS, STOCK

TARGET_RATIO = 0.5  # the production path's runs/s over no checkpointer's


@dataclass
class CpuUse:
    """CPU over the measured window: this process (% of one core), the machine (% of all)."""

    process_pct: float = 0.0
    machine_pct: float = 0.0
    steal_pct: float = 0.0  # taken by the hypervisor: high means noisy figures


CPU_FIELDS = ("process_pct", "machine_pct", "steal_pct")


@dataclass
class ConfigResult:
    name: str
    label: str
    runs: int
    errors: int
    runs_per_s: float
    p50_ms: float
    p99_ms: float
    cpu: CpuUse
    ratio: float = 0.0  # runs/s over no checkpointer's, same workload
    first_error: str | None = None


@dataclass
class WorkloadResult:
    model_ms: float
    configs: list[ConfigResult]

    def get(self, name: str) -> ConfigResult:
        return next(c for c in self.configs if c.name == name)

    @property
    def target_met(self) -> bool:
        ours = self.get(OURS)
        return ours.ratio >= TARGET_RATIO and ours.errors == 0


@dataclass
class BenchResult:
    started: str
    users: int
    duration_s: float  # the window per configuration and workload, over all rounds
    rounds: int
    warmup_s: float
    machine: dict[str, str]
    workloads: list[WorkloadResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for workload, raw in zip(self.workloads, data["workloads"], strict=True):
            raw["target_ratio"] = TARGET_RATIO
            raw["target_met"] = workload.target_met
        return data


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), interpolating linearly between ranks; 0 if empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def render_table(result: BenchResult) -> str:
    lines = [
        "| model call | checkpointer | runs/s | vs none | p50 ms | p99 ms | runs | errors"
        " | bench CPU | machine CPU | steal |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for workload in result.workloads:
        for c in workload.configs:
            lines.append(
                f"| {workload.model_ms:g} ms | {c.label} | {c.runs_per_s:.1f} | {c.ratio:.2f}x"
                f" | {c.p50_ms:.1f} | {c.p99_ms:.1f} | {c.runs} | {c.errors}"
                f" | {c.cpu.process_pct:.0f}% | {c.cpu.machine_pct:.0f}% | {c.cpu.steal_pct:.0f}% |"
            )
    lines.append("")
    for workload in result.workloads:
        ours, stock = workload.get(OURS), workload.get(STOCK)
        verdict = "met" if workload.target_met else "NOT met"
        lines.append(
            f"{workload.model_ms:g} ms model calls: production path {ours.ratio:.2f}x no "
            f"checkpointer (target >= {TARGET_RATIO}x: {verdict}); stock saver {stock.ratio:.2f}x."
        )
    return "\n".join(lines)

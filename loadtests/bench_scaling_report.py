"""``make bench-scaling``'s figures and report: runs/s per orchestrator replica count, the
efficiency of each added replica, where the CPU saturates, and the per-run costs the
capacity model of ``docs/scaling.md`` is built from.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from loadtests.bench_figures import LoadResult, Machine
from loadtests.bench_load import ASSISTANT
from loadtests.bench_report import aligned, md_table, replace_section
from loadtests.bench_scaling_costs import RAY_SYSTEM

DOC = Path(__file__).resolve().parents[1] / "docs" / "scaling.md"
EFFICIENCY_MARKS = ("<!-- scaling-efficiency:start -->", "<!-- scaling-efficiency:end -->")
CAPACITY_MARKS = ("<!-- capacity-inputs:start -->", "<!-- capacity-inputs:end -->")
TARGET_EFFICIENCY = 0.9
# A step whose machine is this busy is CPU-bound: the next replica has no core to run on.
SATURATED_PCT = 85.0
# Other processes this busy (% of one core) make the machine a shared one: said so.
SHARED_PCT = 25.0
CALLS_PER_RUN = 2  # the multi_agent graph on bench_load's prompts: router + specialist
# The deployments first, in the order a request crosses them; then the rest of the stack.
PART_ORDER = ("proxy", "Ingress", "Orchestrator", "ModelRouter")
TOP_REDIS_COMMANDS = 5


class ScalingSettings(BaseModel):
    replicas: list[int]
    cap: int = Field(description="Runs one orchestrator replica takes at once.")
    users_per_slot: float
    users_per_tenant: int
    duration_s: float
    warmup_s: float
    provider_latency_ms: float
    ingress_replicas: int
    router_replicas: int
    storage: str
    limiter: str


class ScalingStep(BaseModel):
    """One replica count: its load, and what the stack, the database and Redis spent."""

    replicas: int
    users: int
    tenants: int
    load_average: float = Field(description="1-minute load average as the step started.")
    load: LoadResult
    cpu_s_by_part: dict[str, float]
    database: dict[str, float] | None = Field(default=None, description="Growth, window.")
    redis: dict[str, float] | None = Field(default=None, description="Growth, window.")
    unread: dict[str, str] = Field(default_factory=dict, description="Services not read.")

    def per_run(self, total: float) -> float | None:
        return total / self.load.runs if self.load.runs else None

    def cpu_ms_per_run(self) -> dict[str, float]:
        """CPU-ms per run of each part of the stack, then the fake provider and the client."""
        runs, window_s = self.load.runs, self.load.duration_s
        if not runs:
            return {}
        known = [p for p in PART_ORDER if p in self.cpu_s_by_part]
        rest = sorted(p for p in self.cpu_s_by_part if p not in PART_ORDER and p != RAY_SYSTEM)
        tail = [RAY_SYSTEM] if RAY_SYSTEM in self.cpu_s_by_part else []
        costs = {p: self.cpu_s_by_part[p] * 1000 / runs for p in [*known, *rest, *tail]}
        costs["stack, all processes"] = sum(costs.values())
        if self.load.provider_cpu_pct is not None:
            costs["fake provider (not the stack)"] = (
                self.load.provider_cpu_pct * window_s * 10 / runs
            )
        costs["load client (not the stack)"] = self.load.client_cpu_pct * window_s * 10 / runs
        return costs


class ScalingResult(BaseModel):
    date: str
    command: str
    machine: Machine
    settings: ScalingSettings
    steps: list[ScalingStep]
    skipped: list[int] = Field(default_factory=list, description="Not run: the time cap.")
    target_efficiency: float = TARGET_EFFICIENCY

    def efficiency(self, step: ScalingStep) -> float | None:
        """runs/s at n replicas over n times the first step's runs/s per replica."""
        if not self.steps or not self.steps[0].load.runs_per_s:
            return None
        first = self.steps[0]
        return step.load.runs_per_s / (step.replicas * first.load.runs_per_s / first.replicas)

    def ideal_runs_per_s(self, step: ScalingStep) -> float:
        """Every replica's slots always busy, a run no longer than its model calls."""
        run_s = CALLS_PER_RUN * self.settings.provider_latency_ms / 1000
        return step.replicas * self.settings.cap / run_s if run_s else float("inf")


def plural(count: float, word: str) -> str:
    return f"{count:g} {word}{'s' * (count != 1)}"


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def verdict(result: ScalingResult, step: ScalingStep) -> str:
    efficiency = result.efficiency(step)
    if step is result.steps[0] or efficiency is None:
        return "(base)" if efficiency is not None else "-"
    if step.load.errors:
        return "**not met** (errors)"
    if efficiency >= result.target_efficiency:
        return "met"
    if step.load.machine_cpu_pct >= SATURATED_PCT:
        return "CPU-bound"
    return "**not met**"


def step_rows(result: ScalingResult) -> list[list[str]]:
    rows = [
        [
            "orchestrator replicas",
            "users",
            "runs/s",
            "efficiency",
            "verdict",
            "of ideal",
            "p50 ms",
            "p99 ms",
            "errors",
            "machine CPU",
            "stack CPU (cores)",
            "other CPU (cores)",
            "load avg",
        ]
    ]
    for step in result.steps:
        load = step.load
        ideal = result.ideal_runs_per_s(step)
        rows.append(
            [
                str(step.replicas),
                f"{step.users} ({step.tenants} tenants)",
                f"{load.runs_per_s:.2f}",
                _f(result.efficiency(step), 2),
                verdict(result, step),
                f"{load.runs_per_s / ideal:.2f}" if ideal else "-",
                _f(load.p50_ms, 0),
                _f(load.p99_ms, 0),
                str(load.errors) + (f" {load.error_kinds}" if load.errors else ""),
                f"{load.machine_cpu_pct:.0f}%",
                f"{load.server_cpu_pct / 100:.2f}",
                f"{load.other_cpu_pct / 100:.2f}",
                f"{step.load_average:.2f}",
            ]
        )
    return rows


def cost_rows(result: ScalingResult) -> list[list[str]]:
    """Per-run costs, a column per step."""
    steps = result.steps
    header = ["per run", *(plural(s.replicas, "orchestrator") for s in steps)]
    rows: list[list[str]] = [header]
    by_step = [s.cpu_ms_per_run() for s in steps]
    parts = list(dict.fromkeys(p for costs in by_step for p in costs))
    rows += [[f"CPU-ms, {p}", *(_f(c.get(p)) for c in by_step)] for p in parts]
    database = [
        ("database transactions", "transactions"),
        ("database statements (pg_stat_statements)", "statements"),
        ("database rows written", "rows_written"),
        ("database rows read", "rows_read"),
    ]
    for label, key in database:
        if any(s.database and key in s.database for s in steps):
            rows.append([label, *(_per_run(s, s.database, key) for s in steps)])
    if any(s.database for s in steps):
        rows.append(
            [
                "Postgres connections open (not per run)",
                *(_f((s.database or {}).get("connections"), 0) for s in steps),
            ]
        )
    if any(s.redis for s in steps):
        rows.append(["Redis commands", *(_per_run(s, s.redis, "commands") for s in steps)])
        rows.append(["Redis, most called", *(_top_commands(s) for s in steps)])
    return rows


def _per_run(step: ScalingStep, counted: dict[str, float] | None, key: str) -> str:
    if counted is None or key not in counted:
        return "-"
    return _f(step.per_run(counted[key]))


def _top_commands(step: ScalingStep) -> str:
    calls = {k.removeprefix("cmd:"): v for k, v in (step.redis or {}).items() if k[:4] == "cmd:"}
    top = sorted(calls.items(), key=lambda item: -item[1])[:TOP_REDIS_COMMANDS]
    return ", ".join(f"{name} {step.per_run(n) or 0:.1f}" for name, n in top if n > 0) or "-"


def reading(result: ScalingResult) -> str:
    """What the steps say: efficiency against the target, where the CPU saturates."""
    steps, cpus = result.steps, result.machine.cpus
    if not steps:
        return "No step was measured."
    parts = []
    for step in steps[1:]:
        efficiency = result.efficiency(step)
        if efficiency is not None:
            parts.append(
                f"{plural(step.replicas, 'replica')}: {step.load.runs_per_s:.2f} runs/s, "
                f"efficiency {efficiency:.2f} (target {result.target_efficiency:g}, "
                f"{verdict(result, step).replace('**', '')}; machine "
                f"{step.load.machine_cpu_pct:.0f}% busy)."
            )
    saturated = [s.replicas for s in steps if s.load.machine_cpu_pct >= SATURATED_PCT]
    parts.append(
        f"The CPU saturated (>= {SATURATED_PCT:g}% of the machine) at "
        f"{plural(saturated[0], 'replica')}."
        if saturated
        else f"The CPU did not saturate (under {SATURATED_PCT:g}% of the machine at every step)."
    )
    widest = max(steps, key=lambda s: s.load.runs)
    costs = widest.cpu_ms_per_run()
    stack_ms = costs.get("stack, all processes")
    if stack_ms:
        others = sum(v for k, v in costs.items() if k.endswith("(not the stack)"))
        per_replica = steps[0].load.runs_per_s / steps[0].replicas
        ceiling = cpus * 1000 / stack_ms
        shared = cpus * 1000 / (stack_ms + others)
        parts.append(
            f"CPU-bound ceiling: at {stack_ms:.0f} CPU-ms per run for the stack (measured at "
            f"{plural(widest.replicas, 'replica')}), {cpus} CPUs hold at most "
            f"{ceiling:.0f} runs/s, "
            f"{shared:.0f} runs/s with the fake provider and the load client on the same "
            f"machine ({others:.0f} CPU-ms per run more)"
            + (
                f"; at {per_replica:.2f} runs/s per replica that is about "
                f"{shared / per_replica:.0f} replicas."
                if per_replica
                else "."
            )
        )
    busiest = max(steps, key=lambda s: s.load.other_cpu_pct)
    if busiest.load.other_cpu_pct >= SHARED_PCT:
        parts.append(
            f"Processes outside the test used {busiest.load.other_cpu_pct / 100:.2f} cores "
            f"during the {plural(busiest.replicas, 'replica')} step: the machine was shared, "
            "so efficiency and saturation are not the stack's alone; rerun on a quiet machine."
        )
    if result.skipped:
        parts.append(f"Not run (time cap): {', '.join(map(str, result.skipped))} replicas.")
    return " ".join(parts)


def setup_text(result: ScalingResult) -> str:
    s, m = result.settings, result.machine
    return (
        f"`{ASSISTANT}` graph ({CALLS_PER_RUN} model calls a run), a standalone fake provider "
        f"at {s.provider_latency_ms:g} ms a call; each orchestrator replica takes at most "
        f"{s.cap} runs at once (Serve's `max_ongoing_requests` of the orchestrator, which "
        f"caps `runs/wait`, and `AGENT_RUN_MAX_CONCURRENT` for queued runs); ingress "
        f"{s.ingress_replicas} and router {s.router_replicas} replica(s), fixed; "
        f"{s.users_per_slot:g} users per orchestrator slot, each looping `runs/wait` on a "
        f"thread of its own, spread over tenants of at most {plural(s.users_per_tenant, 'user')} "
        f"(half of `AGENT_MAX_OPEN_STREAMS`, {s.cap - 1}: it must stay below the "
        "orchestrator's `max_ongoing_requests`); "
        f"{s.warmup_s:g} s of warm-up, then {s.duration_s:g} s counted; storage {s.storage}, "
        f"limiter {s.limiter}. A fresh stack per step. Machine: {m.cpus} CPUs ({m.cpu_model}), "
        f"{m.ram_gib:.1f} GiB RAM, Python {m.python}, Ray {m.ray}; load average "
        f"{m.load_average:.2f} at the start; other Ray clusters: {m.foreign_ray_clusters}."
    )


def render_terminal(result: ScalingResult) -> str:
    return "\n\n".join([aligned(step_rows(result)), aligned(cost_rows(result)), reading(result)])


def render_section(result: ScalingResult) -> str:
    rows = step_rows(result)
    costs = cost_rows(result)
    unread = {f"{s.replicas}: {n}": why for s in result.steps for n, why in s.unread.items()}
    return "\n".join(
        [
            "## Scaling efficiency (`make bench-scaling`)",
            "",
            f"Measured {result.date} with `{result.command}`.",
            "",
            setup_text(result),
            "",
            *md_table(rows[0], rows[1:]),
            "",
            "Efficiency: runs/s at n replicas / (n x runs/s per replica of the first step). "
            "Of ideal: runs/s / (n x cap / the model calls' time), every slot always busy. "
            "CPU columns: cores busy over the counted window (machine: % of all cores).",
            "",
            reading(result),
            "",
            *md_table(costs[0], costs[1:]),
            *([""] + [f"Not read: {k}: {v}" for k, v in unread.items()] if unread else []),
        ]
    )


def connections_per_replica(result: ScalingResult) -> float | None:
    """Postgres connections each added orchestrator replica opened (first to last step)."""
    counted = [s for s in result.steps if s.database and "connections" in s.database]
    if len(counted) < 2 or counted[-1].replicas == counted[0].replicas:
        return None
    first, last = counted[0], counted[-1]
    assert first.database is not None and last.database is not None
    grown = last.database["connections"] - first.database["connections"]
    return grown / (last.replicas - first.replicas)


def process_ceilings(result: ScalingResult) -> dict[str, float]:
    """Runs/s one process of each deployment (and the proxy) takes before its one core is
    busy (a Python process uses one core at most), from the widest step's CPU-ms per run."""
    if not result.steps:
        return {}
    costs = max(result.steps, key=lambda s: s.load.runs).cpu_ms_per_run()
    return {part: 1000 / costs[part] for part in PART_ORDER if costs.get(part)}


def render_capacity(result: ScalingResult) -> str:
    costs = cost_rows(result)
    per_replica = connections_per_replica(result)
    ceilings = process_ceilings(result)
    notes = []
    if ceilings:
        notes.append(
            "One process at one core (a Python process uses no more) takes at most: "
            + ", ".join(f"{part} {runs:.0f} runs/s" for part, runs in ceilings.items())
            + " (1000 / its CPU-ms per run, at the widest step; Ingress and Orchestrator "
            "processes are Serve replicas, ModelRouter counts two model calls a run)."
        )
    if per_replica is not None:
        notes.append(
            f"Each added orchestrator replica opened {per_replica:.1f} Postgres connections "
            "(open at the window's end, first step to last)."
        )
    notes.append(
        "Database and Redis figures count every client of that database and server over the "
        "window (a backend reports its counters within about a second). A transaction is at "
        "least one statement: the checkpointer's statements run in autocommit, one "
        "transaction each; statements are counted only where `pg_stat_statements` is loaded."
    )
    return "\n".join(
        [
            "## Capacity inputs: measured cost of one run",
            "",
            f"From `make bench-scaling`, {result.date} ({result.settings.storage}, "
            f"{result.settings.limiter}; {result.machine.cpus} CPUs): one `{ASSISTANT}` run "
            f"({CALLS_PER_RUN} model calls) costs, at each orchestrator replica count measured "
            "(each replica's background work, its queue poll, heartbeats and crons, is "
            "spread over the runs, so it grows with replicas at a fixed load):",
            "",
            *md_table(costs[0], costs[1:]),
            "",
            "\n\n".join(notes),
        ]
    )


def write_doc(result: ScalingResult, path: Path = DOC) -> None:
    """Rewrite this benchmark's two sections, creating the file if missing."""
    document = path.read_text() if path.exists() else "# Scaling\n"
    document = replace_section(document, render_section(result), EFFICIENCY_MARKS)
    path.write_text(replace_section(document, render_capacity(result), CAPACITY_MARKS))

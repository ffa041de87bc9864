"""``make bench``: cold start, idle memory, per-run overhead and throughput of the local stack.

    python loadtests/bench.py [--runs 100] [--users 32] [--duration 30]
                              [--provider-latency-ms 50] [--provider standalone|stack]
                              [--skip-throughput] [--no-write]

Starts the stack as ``make run`` does (``python -m agent_runtime.cli.launch``, fresh data dir,
free ports), measures it against the fake provider at a fixed latency, runs the same load
against ``loadtests/baseline_app.py`` (the same graph in one FastAPI process, no Ray), then
stops everything it started. Prints a table, writes ``loadtests/results/bench.json`` and
rewrites the marked section of ``docs/benchmarks.md``. Exit status: 0 when every figure was
measured (met or not), 2 when the stack or a measurement failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import httpx
import psutil
from pydantic import BaseModel, Field, computed_field

REPO_ROOT = Path(__file__).resolve().parents[1]
DOC = REPO_ROOT / "docs" / "benchmarks.md"
RESULTS = REPO_ROOT / "loadtests" / "results" / "bench.json"
START_MARK, END_MARK = "<!-- bench:start -->", "<!-- bench:end -->"

TARGET_COLD_START_S = 15.0
TARGET_IDLE_GIB = 1.5
TARGET_OVERHEAD_P50_MS = 15.0
TARGET_RATIO = 0.5

ASSISTANT = "multi_agent"
# Routed to the code and the general specialist: two LLM calls per run, no tool loop.
PROMPTS = (
    "Write a Python function that returns the n-th Fibonacci number iteratively.",
    "In two sentences, what is the difference between a process and a thread?",
)
UNLIMITED = "100000"  # rate limit per second and burst: the limiter never refuses
POLL_S = 0.05
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
IDLE_S = 5.0
WARMUP_RUNS = 10
LOAD_WARMUP_S = 5.0
REQUEST_TIMEOUT_S = 120.0
PROGRESS_EVERY_S = 5.0
GIB = 1024**3

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


# -- rendering -------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def summary_rows(result: BenchResult) -> list[tuple[str, str, str, str]]:
    """(figure, result, target, verdict) per figure."""
    cold, memory, over = result.cold_start, result.idle_memory, result.overhead
    rows = [
        (
            "Cold start (launch -> first 200 on /ok)",
            f"{cold.seconds:.1f} s",
            f"<= {cold.target_s:g} s",
            _verdict(cold.met),
        ),
        (
            f"Idle memory (RSS of {memory.processes} processes)",
            f"{memory.rss_gib:.2f} GiB",
            f"<= {memory.target_gib:g} GiB",
            _verdict(memory.met),
        ),
        (
            "Overhead per run p50 (latency - provider)",
            f"{over.p50_ms:.1f} ms",
            f"<= {over.target_p50_ms:g} ms",
            _verdict(over.met),
        ),
        ("Overhead per run p99", f"{over.p99_ms:.1f} ms", "-", "-"),
    ]
    tput = result.throughput
    if tput is not None:
        rows.append(
            (
                f"Throughput at {tput.ours.users} users, ours / baseline",
                f"{tput.ours.runs_per_s:.1f} / {tput.baseline.runs_per_s:.1f} runs/s "
                f"= {tput.ratio:.2f}x",
                f">= {tput.target_ratio:g}x",
                _verdict(tput.met),
            )
        )
    return rows


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render_table(result: BenchResult) -> str:
    """Aligned plain-text summary for the terminal."""
    rows = [("figure", "result", "target", "verdict"), *summary_rows(result)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.replace("**", "").ljust(w) for cell, w in zip(row, widths, strict=True))
        for row in rows
    )


# Per part: what it is, and the next step to shrink it.
ADVICE = {
    "client_ingress": (
        "the Serve proxy -> ingress hop with the ingress's own work",
        "trim the ingress's per-request work (key lookup, limiter, validation)",
    ),
    "ingress_orchestrator": (
        "the orchestrator handle call with the run bookkeeping around the graph",
        "batch the two run-bookkeeping transactions with the first and last checkpoint writes",
    ),
    "graph": (
        "LangGraph's own work",
        "profile the graph's reducers and the chat model wrapper",
    ),
    "graph_checkpoint": (
        "the graph's own work with the checkpoint writes it waits for",
        "make checkpoint writes cheaper, or use `durability=exit` for short runs",
    ),
    "router": (
        "the router hops, one Ray handle call per LLM call",
        "call the provider from the orchestrator's process, keeping the router's logic",
    ),
    "checkpoint": (
        "checkpoint writes",
        "make checkpoint writes cheaper, or use `durability=exit` for short runs",
    ),
}


# What the router's provider time holds besides the fake's own latency.
CLIENT_WORK = {
    "standalone": "client work (ChatOpenAI and HTTP)",
    "stack": "client work (ChatOpenAI and HTTP) and Ray's proxy hop to the built-in provider",
}


def critical_parts(median: HopBreakdown) -> dict[str, float]:
    """The non-provider parts by median; a negative graph part is merged with checkpoints."""
    parts = median.model_dump()
    del parts["provider"]
    if parts["graph"] < 0:
        parts["graph_checkpoint"] = parts.pop("graph") + parts.pop("checkpoint")
    return dict(sorted(parts.items(), key=lambda item: -item[1]))


def where_time_goes(result: BenchResult) -> str:
    """A short reading of the numbers: where the time goes, and what to try next."""
    over, s = result.overhead, result.settings
    per_call = (over.median.provider - 2 * s.provider_latency_ms) / 2
    (first, first_ms), (second, second_ms) = list(critical_parts(over.median).items())[:2]
    parts = [
        f"At low load a run takes {over.latency_p50_ms:.0f} ms (p50): {over.median.provider:.0f}"
        f" ms in the two provider calls and {over.p50_ms:.0f} ms of runtime overhead. The "
        f"provider time, as the router measures it, includes about {per_call:.0f} ms a call "
        f"of {CLIENT_WORK[s.provider]} on top of the fake's {s.provider_latency_ms:g}"
        " ms; the baseline pays that too, and the overhead leaves it out. The largest parts "
        f"of the overhead are {ADVICE[first][0]} ({first_ms:.1f} ms) and {ADVICE[second][0]} "
        f"({second_ms:.1f} ms). Next steps: {ADVICE[first][1]}; {ADVICE[second][1]}.",
    ]
    if over.median.graph < 0:
        parts.append(
            f"Checkpoint writes took {over.median.checkpoint:.1f} ms, but the graph part is "
            f"negative ({over.median.graph:.1f} ms): at least {-over.median.graph:.1f} ms of "
            "the writes overlap other work, so they are not all on the critical path."
        )
    memory = result.idle_memory
    big = [f"{kind} ({mib:.0f} MiB)" for kind, mib in _top(memory.rss_mib_by_kind, 3)]
    parts.append(
        f"Idle, {memory.processes} processes hold {memory.rss_gib:.2f} GiB RSS; the largest "
        f"are {', '.join(big)}. Each replica is a full Python process with LangChain loaded, "
        "so fewer processes (the router inside the orchestrator, for one) is the main lever."
    )
    tput = result.throughput
    if tput is not None:
        ours, base = tput.ours, tput.baseline
        cpu_ratio = (
            base.server_cpu_ms_per_run / ours.server_cpu_ms_per_run
            if base.server_cpu_ms_per_run and ours.server_cpu_ms_per_run
            else 0.0
        )
        parts.append(
            f"Under {ours.users} users the stack used {ours.server_cpu_pct:.0f}% of a core "
            f"(machine {ours.machine_cpu_pct:.0f}% busy) and {_ms(ours.server_cpu_ms_per_run)}"
            f" ms of CPU per run; the baseline used {base.server_cpu_pct:.0f}% of a core and "
            f"{_ms(base.server_cpu_ms_per_run)} ms per run. The baseline is one Python process "
            "and cannot use more than one core, while the stack spreads over all of them; that "
            f"is why the ratio ({tput.ratio:.2f}x) is better than the CPU per run ratio "
            f"({cpu_ratio:.2f}x). The stack's CPU per run is the number to bring down. The load "
            f"client used {ours.client_cpu_pct:.0f}% of a core, so it was not the limit."
        )
    return " ".join(parts)


def command_line(args: argparse.Namespace) -> str:
    words = [
        "python",
        "loadtests/bench.py",
        "--runs",
        str(args.runs),
        "--users",
        str(args.users),
        "--duration",
        f"{args.duration:g}",
        "--provider-latency-ms",
        f"{args.provider_latency_ms:g}",
        "--provider",
        args.provider,
    ]
    if args.skip_throughput:
        words.append("--skip-throughput")
    return shlex.join(words)


def render_section(result: BenchResult) -> str:
    """The markdown between the bench markers (markers not included)."""
    m, s, memory, over = result.machine, result.settings, result.idle_memory, result.overhead
    provider = (
        "a standalone fake provider process (uvicorn) that both the stack and the baseline call"
        if s.provider == "standalone"
        else "the stack's built-in fake provider (a Serve app), which the baseline calls too"
    )
    lines = [
        f"## Latest run: {result.date}",
        "",
        f"Machine: {m.cpus} CPUs ({m.cpu_model}), {m.ram_gib:.1f} GiB RAM, Python {m.python}, "
        f"Ray {m.ray}. Load average when it started: {m.load_average:.2f}; other Ray "
        f"clusters on the machine: {m.foreign_ray_clusters}.",
        "",
        f"Settings: `{ASSISTANT}` graph (2 LLM calls per run: router + specialist); "
        f"{provider}, at a fixed {s.provider_latency_ms:g} ms per call, no jitter or failures; "
        f"storage {s.storage}; limiter {s.limiter}, limit raised so it never refuses.",
        "",
        *_md_table(("figure", "result", "target", "verdict"), summary_rows(result)),
        "",
        f"### Where a run's time goes ({over.runs} sequential runs, one client, after "
        f"{s.warmup_runs} warm-up runs; a fresh thread per run; {over.errors} errors"
        + (f": {over.error_kinds})" if over.errors else ")"),
        "",
        *_md_table(
            ("part", "median ms", "mean ms"),
            [
                (label, f"{getattr(over.median, k):.1f}", f"{getattr(over.mean, k):.1f}")
                for k, label in HOP_LABELS.items()
            ]
            + [
                (
                    "client latency (p50 / p99)",
                    f"{over.latency_p50_ms:.1f} / {over.latency_p99_ms:.1f}",
                    f"{over.mean.total:.1f}",
                )
            ],
        ),
        "",
        f"Idle memory: {memory.rss_gib:.2f} GiB RSS (PSS {_gib(memory.pss_gib)}) over "
        f"{memory.processes} processes, {memory.outside_launcher_tree} of them outside the "
        f"launcher's process tree; idle, they used {memory.idle_cpu_pct:.0f}% of one core. "
        "Largest: "
        + ", ".join(f"{kind} {mib:.0f} MiB" for kind, mib in _top(memory.rss_mib_by_kind, 6))
        + ".",
        "",
    ]
    if result.throughput is not None:
        t = result.throughput
        lines += [
            f"### Throughput ({t.ours.users} users, {t.ours.duration_s:g} s measured after "
            f"{s.load_warmup_s:g} s of warm-up, each user on one thread)",
            "",
            *_md_table(
                (
                    "system",
                    "runs/s",
                    "p50 ms",
                    "p99 ms",
                    "runs",
                    "errors",
                    "server CPU/run",
                    "server CPU",
                    "provider CPU",
                    "client CPU",
                    "other CPU",
                    "machine CPU",
                ),
                [
                    (
                        r.system,
                        f"{r.runs_per_s:.1f}",
                        _ms(r.p50_ms),
                        _ms(r.p99_ms),
                        str(r.runs),
                        str(r.errors),
                        f"{_ms(r.server_cpu_ms_per_run)} ms",
                        f"{r.server_cpu_pct:.0f}%",
                        _pct(r.provider_cpu_pct),
                        f"{r.client_cpu_pct:.0f}%",
                        f"{r.other_cpu_pct:.0f}%",
                        f"{r.machine_cpu_pct:.0f}%",
                    )
                    for r in (t.ours, t.baseline)
                ],
            ),
            "",
        ]
        start, end = t.ours.server_processes
        lines += [
            f"The stack had {start} processes when the window opened and {end} at its end.",
            "",
        ]
        failed = [f"{r.system}: {r.error_kinds}" for r in (t.ours, t.baseline) if r.errors]
        if failed:
            lines += [f"Errors by kind: {'; '.join(failed)}.", ""]
    lines += [
        "### Where the time goes / next steps",
        "",
        where_time_goes(result),
        "",
        "### Reproduce",
        "",
        "```bash",
        "make bench   # the defaults",
        result.command,
        "```",
    ]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} GiB"


def _top(by_kind: Mapping[str, float], n: int) -> list[tuple[str, float]]:
    return sorted(by_kind.items(), key=lambda item: -item[1])[:n]


def replace_section(document: str, section: str) -> str:
    """``document`` with the text between the markers replaced (appended if none)."""
    block = f"{START_MARK}\n{section.strip()}\n{END_MARK}"
    start, end = document.find(START_MARK), document.find(END_MARK)
    if start == -1 or end < start:
        return document.rstrip() + "\n\n" + block + "\n"
    return document[:start] + block + document[end + len(END_MARK) :]


# -- processes -------------------------------------------------------------------------


class StartFailed(RuntimeError):
    """A process did not come up (or no run succeeded); the message says why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _kill(proc: psutil.Process) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.kill()


class Child:
    """A process this script started, output in a log file, stopped with its descendants."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("wb") as out:
            # Its own session: Ctrl-C reaches only this script, which stops it in order.
            self.proc = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @classmethod
    def module(cls, name: str, work: Path, env: Mapping[str, str], *argv: str) -> Child:
        """``python -m <argv>`` from the repository root, logging to ``work/<name>.log``."""
        log = work / f"{name.replace(' ', '-')}.log"
        return cls(name, [sys.executable, "-m", *argv], env, log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self, during: str) -> None:
        """Fail the benchmark if this process died: its figures would be about errors."""
        if self.proc.poll() is not None:
            raise StartFailed(
                f"{self.name} exited ({self.proc.returncode}) during {during}; its output:\n"
                + self.tail()
            )

    def wait_ready(self, url: str, timeout_s: float = START_TIMEOUT_S) -> None:
        """Return once ``url`` answers 200, polling every 50 ms."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    code = self.proc.returncode
                    raise StartFailed(f"{self.name} exited ({code}); its output:\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(url).status_code == 200:
                        return
                time.sleep(POLL_S)
        raise StartFailed(f"{self.name}: no 200 from {url} in {timeout_s:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM, wait; past the timeout SIGKILL it and every process under it."""
        if self.proc.poll() is not None:
            return
        try:
            descendants = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"  {self.name} did not stop in {STOP_TIMEOUT_S:.0f} s; killing its tree")
            self.proc.kill()
            self.proc.wait(10)
        for proc in psutil.wait_procs(descendants, timeout=10)[1]:
            _kill(proc)


def processes_with(marker: str) -> list[psutil.Process]:
    """Processes whose command line mentions ``marker`` (this run's Ray temp dir)."""
    return [
        proc
        for proc in psutil.process_iter(["cmdline"])
        if any(marker in arg for arg in proc.info.get("cmdline") or [])
    ]


def sweep(marker: str) -> int:
    """Stop this run's Ray processes that outlived the launcher; how many there were."""
    left = processes_with(marker)
    for proc in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    for proc in psutil.wait_procs(left, timeout=10)[1]:
        _kill(proc)
    return len(left)


def stack_processes(launcher_pid: int, marker: str) -> tuple[list[psutil.Process], int]:
    """The launcher, its descendants, and any process of this run's Ray session outside them."""
    root = psutil.Process(launcher_pid)
    tree = [root, *root.children(recursive=True)]
    pids = {proc.pid for proc in tree}
    outside = [proc for proc in processes_with(marker) if proc.pid not in pids]
    return tree + outside, len(outside)


def _kind(proc: psutil.Process, launcher_pid: int) -> str:
    """A readable name: ``ray::ServeReplica:...``, ``raylet``, ``dashboard/agent`` ..."""
    if proc.pid == launcher_pid:
        return "launcher"
    cmdline = proc.cmdline() or [proc.name()]
    if cmdline[0].startswith("ray::"):
        # The title names the running method too ("ray::ServeController.listen_for_change").
        return cmdline[0].split()[0].split(".")[0]
    script = next((Path(arg) for arg in cmdline[1:3] if arg.endswith(".py")), None)
    return f"{script.parent.name}/{script.stem}" if script else Path(cmdline[0]).name


def measure_memory(launcher_pid: int, marker: str, idle_cpu_pct: float) -> IdleMemory:
    procs, outside = stack_processes(launcher_pid, marker)
    rss, pss, by_kind, counted = 0.0, 0.0, dict[str, float](), 0
    for proc in procs:
        try:
            info, kind = proc.memory_full_info(), _kind(proc, launcher_pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        counted += 1
        rss += info.rss
        pss += getattr(info, "pss", 0)  # Linux only; then the same as USS + shared share
        by_kind[kind] = by_kind.get(kind, 0.0) + info.rss / 2**20
    return IdleMemory(
        rss_gib=rss / GIB,
        pss_gib=pss / GIB if pss else None,
        processes=counted,
        outside_launcher_tree=outside,
        idle_cpu_pct=idle_cpu_pct,
        rss_mib_by_kind=by_kind,
    )


ProcessGroup = Callable[[], Sequence[psutil.Process]]


def cpu_by_pid(procs: Iterable[psutil.Process]) -> dict[int, float]:
    """CPU seconds each process used so far (with its exited children)."""
    used: dict[int, float] = {}
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = proc.cpu_times()
            used[proc.pid] = times.user + times.system + times.children_user + times.children_system
    return used


class CpuMeter:
    """CPU used by groups of processes between ``start`` and ``stop``, in % of one core.

    A group is listed again at ``stop``, so a replica started meanwhile is counted too.
    """

    def __init__(self, groups: Mapping[str, ProcessGroup]) -> None:
        self._groups = groups
        self._base: dict[str, dict[int, float]] = {}
        self._started = 0.0
        # How many processes each group had at start and at stop (replicas come and go).
        self.processes: dict[str, tuple[int, int]] = {}

    def start(self) -> None:
        self._base = {name: cpu_by_pid(group()) for name, group in self._groups.items()}
        self._started = time.perf_counter()
        psutil.cpu_percent(interval=None)

    def stop(self) -> dict[str, float]:
        """Each group's % of one core; ``machine``: % of all cores busy; ``other``: the rest."""
        elapsed = time.perf_counter() - self._started
        used = {}
        for name, group in self._groups.items():
            base = self._base[name]
            now = cpu_by_pid(group())
            self.processes[name] = (len(base), len(now))
            seconds = sum(cpu - base.get(pid, 0.0) for pid, cpu in now.items())
            used[name] = seconds / elapsed * 100
        machine_pct = psutil.cpu_percent(interval=None)
        other = max(0.0, machine_pct * (os.cpu_count() or 1) - sum(used.values()))
        return {**used, "machine": machine_pct, "other": other}


def machine(marker: str) -> Machine:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    foreign = [
        proc
        for proc in psutil.process_iter(["name", "cmdline"])
        if proc.info.get("name") == "raylet"
        and not any(marker in arg for arg in proc.info.get("cmdline") or [])
    ]
    return Machine(
        cpus=os.cpu_count() or 1,
        ram_gib=psutil.virtual_memory().total / GIB,
        cpu_model=model,
        python=platform.python_version(),
        ray=importlib.metadata.version("ray"),
        foreign_ray_clusters=len(foreign),
        load_average=os.getloadavg()[0],
    )


# -- load ------------------------------------------------------------------------------


def run_body(index: int) -> dict[str, Any]:
    prompt = PROMPTS[index % len(PROMPTS)]
    return {"assistant_id": ASSISTANT, "input": {"messages": [{"role": "user", "content": prompt}]}}


def run_error(response: httpx.Response) -> str | None:
    """None for a 200 whose final values end with the model's answer, else what went wrong."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    try:
        messages = response.json().get("messages") or []
    except (ValueError, AttributeError):
        return "body is not a JSON object"
    if not messages or not isinstance(messages[-1], dict) or messages[-1].get("type") != "ai":
        return "no answer in the final values"
    return None


def _client(base_url: str, headers: Mapping[str, str], connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=base_url, headers=dict(headers), timeout=REQUEST_TIMEOUT_S, limits=limits
    )


async def new_thread(client: httpx.AsyncClient) -> str:
    response = await client.post("/threads", json={})
    response.raise_for_status()
    thread_id: str = response.json()["thread_id"]
    return thread_id


async def measure_overhead(base_url: str, headers: Mapping[str, str], runs: int) -> Overhead:
    """Sequential runs, one client, a fresh thread each (thread creation is not timed)."""
    measured: list[tuple[float, ServerTiming]] = []
    errors: list[str] = []
    async with _client(base_url, headers, 2) as client:
        for index in range(WARMUP_RUNS + runs):
            thread_id = await new_thread(client)
            started = time.perf_counter()
            response = await client.post(f"/threads/{thread_id}/runs/wait", json=run_body(index))
            client_ms = (time.perf_counter() - started) * 1000
            if index < WARMUP_RUNS:
                continue
            header = response.headers.get("server-timing")
            error = run_error(response) or (None if header else "no Server-Timing header")
            if error is None and header is not None:
                measured.append((client_ms, ServerTiming.from_header(header)))
            else:
                errors.append(error or "")
            done = index - WARMUP_RUNS + 1
            if done % 25 == 0 or done == runs:
                print(f"  {done}/{runs} runs, {len(errors)} errors", flush=True)
    if not measured:
        raise StartFailed(f"all {runs} runs failed: {dict(Counter(errors))}")
    return Overhead.from_runs(measured, errors)


async def load(
    system: str,
    base_url: str,
    headers: Mapping[str, str],
    args: argparse.Namespace,
    meter: CpuMeter,
) -> LoadResult:
    """``args.users`` clients, each on its own thread, looping runs/wait; a window counts."""
    ended: list[tuple[float, float, str | None]] = []  # (end time, latency ms, error)
    async with _client(base_url, headers, args.users + 4) as client:
        thread_ids = await asyncio.gather(*(new_thread(client) for _ in range(args.users)))
        start = time.perf_counter()
        window = (start + LOAD_WARMUP_S, start + LOAD_WARMUP_S + args.duration)

        async def user(index: int, thread_id: str) -> None:
            while time.perf_counter() < window[1]:
                sent = time.perf_counter()
                try:
                    response = await client.post(
                        f"/threads/{thread_id}/runs/wait", json=run_body(index)
                    )
                    error = run_error(response)
                except httpx.HTTPError as exc:
                    error = type(exc).__name__
                now = time.perf_counter()
                ended.append((now, (now - sent) * 1000, error))
                index += 1

        async def progress() -> None:
            while time.perf_counter() < window[1]:
                await asyncio.sleep(PROGRESS_EVERY_S)
                kinds = Counter(error for _, _, error in ended if error is not None)
                failed = f", errors: {dict(kinds)}" if kinds else ", no errors"
                print(f"  {system}: {len(ended)} runs{failed}", flush=True)

        tasks = [asyncio.create_task(user(i, t)) for i, t in enumerate(thread_ids)]
        tasks.append(asyncio.create_task(progress()))
        try:
            await asyncio.sleep(window[0] - time.perf_counter())
            meter.start()
            await asyncio.sleep(window[1] - time.perf_counter())
            cpu = meter.stop()
            await asyncio.gather(*tasks)
        finally:
            # Interrupted: the users end before their client closes under them.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    counted = [(latency, error) for end, latency, error in ended if window[0] <= end <= window[1]]
    latencies = [latency for latency, error in counted if error is None]
    errors = Counter(error for _, error in counted if error is not None)
    return LoadResult(
        system=system,
        users=args.users,
        duration_s=args.duration,
        runs=len(latencies),
        errors=sum(errors.values()),
        error_kinds=dict(errors),
        runs_per_s=len(latencies) / args.duration,
        p50_ms=percentile(latencies, 50) if latencies else None,
        p99_ms=percentile(latencies, 99) if latencies else None,
        client_cpu_pct=cpu["client"],
        server_cpu_pct=cpu["server"],
        provider_cpu_pct=cpu.get("provider"),
        machine_cpu_pct=cpu["machine"],
        other_cpu_pct=cpu["other"],
        server_processes=meter.processes["server"],
    )


# -- the run ---------------------------------------------------------------------------


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="sequential runs for the overhead")
    parser.add_argument("--users", type=int, default=32, help="concurrent users for throughput")
    parser.add_argument("--duration", type=float, default=30.0, help="throughput window, s")
    parser.add_argument("--provider-latency-ms", type=float, default=50.0, help="fixed, per call")
    parser.add_argument(
        "--provider",
        choices=("standalone", "stack"),
        default="standalone",
        help="standalone: one fake provider process outside both systems (default); "
        "stack: the stack's built-in fake provider app, which the baseline calls too",
    )
    parser.add_argument("--port", type=int, default=0, help="the stack's HTTP port (0: free)")
    parser.add_argument("--skip-throughput", action="store_true", help="no load, no baseline")
    parser.add_argument("--no-write", action="store_true", help="leave docs/benchmarks.md alone")
    return parser


def _interrupt(_signum: int, frame: FrameType | None) -> None:
    # As SIGINT: inside asyncio.run that cancels the main task cleanly, elsewhere it raises
    # KeyboardInterrupt; either way the finally block stops what was started.
    signal.raise_signal(signal.SIGINT)


def write_doc(result: BenchResult, path: Path = DOC) -> None:
    document = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(replace_section(document, render_section(result)))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.runs < 1 or args.users < 1 or args.duration <= 0 or args.provider_latency_ms < 0:
        print("--runs, --users and --duration must be positive", file=sys.stderr)
        return 2
    # Python leaves SIGINT ignored when started in the background; Ctrl-C and SIGTERM stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    # A short path: Ray's unix sockets live under it, and their paths are length-limited.
    work = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp" if Path("/tmp").is_dir() else None))
    bench = Bench(args, work)
    try:
        result = bench.run()
    except (StartFailed, httpx.HTTPError) as error:
        print(f"\nBenchmark failed: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave Ray running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("Stopping everything this benchmark started (up to a minute)...", flush=True)
        bench.stop_all()
        shutil.rmtree(work, ignore_errors=True)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(result.model_dump_json(indent=2) + "\n")
    print("\n" + render_table(result) + "\n\n" + where_time_goes(result) + "\n")
    print(f"Wrote {RESULTS.relative_to(REPO_ROOT)}")
    if not args.no_write:
        write_doc(result)
        print(f"Updated {DOC.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make bench``: cold start, idle memory, per-run overhead and throughput of the local stack.

    python loadtests/bench.py [--runs 100] [--users 32] [--duration 30]
                              [--provider-latency-ms 50] [--provider standalone|stack]
                              [--skip-throughput] [--no-write]

Starts the stack as ``make run`` does (``python -m deployments.launch``, fresh data dir,
free ports), measures it against the fake provider at a fixed latency, runs the same load
against ``loadtests/baseline_app.py`` (the same graph in one FastAPI process, no Ray), then
stops everything it started. Prints a table, writes ``loadtests/results/bench.json`` and
rewrites the marked section of ``docs/benchmarks.md``. Exit status: 0 when every figure was
measured (met or not), 2 when the stack or a measurement failed.
"""

from __future__ import annotations

import argparse
import asyncio
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
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import httpx
import psutil
from pydantic import BaseModel, Field

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
    """The runtime's ``Server-Timing`` of one run, in ms (see ``deployments/routes.py``)."""

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
    def aggregate(cls, runs: Sequence[HopBreakdown], how: Literal["median", "mean"]) -> HopBreakdown:
        """Each part's median (parts then do not add up) or mean (they do)."""
        reduce = statistics.median if how == "median" else statistics.fmean
        return cls(**{name: reduce([getattr(r, name) for r in runs]) for name in HOP_LABELS})


# -- results ---------------------------------------------------------------------------


class ColdStart(BaseModel):
    seconds: float
    target_s: float = TARGET_COLD_START_S

    @property
    def met(self) -> bool:
        return self.seconds <= self.target_s


class IdleMemory(BaseModel):
    rss_gib: float
    pss_gib: float | None
    processes: int
    outside_launcher_tree: int = Field(description="Ray processes not descending from it.")
    rss_mib_by_kind: dict[str, float]
    target_gib: float = TARGET_IDLE_GIB

    @property
    def met(self) -> bool:
        return self.rss_gib <= self.target_gib


class Overhead(BaseModel):
    runs: int
    errors: int
    p50_ms: float
    p99_ms: float
    latency_p50_ms: float
    latency_p99_ms: float
    median: HopBreakdown
    mean: HopBreakdown
    target_p50_ms: float = TARGET_OVERHEAD_P50_MS

    @property
    def met(self) -> bool:
        return self.p50_ms <= self.target_p50_ms

    @classmethod
    def from_runs(cls, runs: Sequence[tuple[float, ServerTiming]], errors: int) -> Overhead:
        hops = [HopBreakdown.from_run(client_ms, timing) for client_ms, timing in runs]
        overheads = [hop.overhead for hop in hops]
        latencies = [client_ms for client_ms, _ in runs]
        return cls(
            runs=len(runs),
            errors=errors,
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
    runs_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    client_cpu_pct: float = Field(description="This script's CPU, % of one core.")
    server_cpu_pct: float = Field(description="The system under test's CPU, % of one core.")
    machine_cpu_pct: float = Field(description="All cores busy, %.")

    @property
    def server_cpu_ms_per_run(self) -> float | None:
        if not self.runs:
            return None
        return self.server_cpu_pct / 100 * self.duration_s * 1000 / self.runs


class Throughput(BaseModel):
    ours: LoadResult
    baseline: LoadResult
    target_ratio: float = TARGET_RATIO

    @property
    def ratio(self) -> float:
        if self.baseline.runs_per_s == 0:
            return 0.0
        return self.ours.runs_per_s / self.baseline.runs_per_s

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
        ("Cold start (launch -> first 200 on /ok)", f"{cold.seconds:.1f} s",
         f"<= {cold.target_s:g} s", _verdict(cold.met)),
        (f"Idle memory (RSS of {memory.processes} processes)", f"{memory.rss_gib:.2f} GiB",
         f"<= {memory.target_gib:g} GiB", _verdict(memory.met)),
        ("Overhead per run p50 (latency - provider)", f"{over.p50_ms:.1f} ms",
         f"<= {over.target_p50_ms:g} ms", _verdict(over.met)),
        ("Overhead per run p99", f"{over.p99_ms:.1f} ms", "-", "-"),
    ]  # fmt: skip
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


ADVICE = {
    "client_ingress": "the Serve proxy -> ingress replica hop and the ingress's own work "
    "(key lookup, limiter, request validation) are the next thing to trim",
    "ingress_orchestrator": "the ingress -> orchestrator handle call and the run bookkeeping "
    "around the graph (thread and run rows written before and after it) come next: fewer "
    "metadata round trips per run (one write to begin, one to finish) would cut it",
    "graph": "LangGraph's own work (state reducers, message conversion, the chat model "
    "wrapper) comes next",
    "router": "the router hop (one Ray handle call per LLM call, two per run) comes next: "
    "calling the provider from the orchestrator's process would remove it",
    "checkpoint": "checkpoint writes come next: a cheaper serialisation or `durability=exit` "
    "for short runs would cut them",
}


def where_time_goes(result: BenchResult) -> str:
    """A short reading of the numbers: the biggest hops and what to do about them."""
    over = result.overhead
    median = over.median.model_dump()
    ranked = sorted((k for k in median if k != "provider"), key=lambda k: -median[k])
    top = ranked[:2]
    parts = [
        f"At low load a run takes {over.latency_p50_ms:.0f} ms (p50), of which "
        f"{over.median.provider:.0f} ms is the provider; the remaining {over.p50_ms:.0f} ms "
        f"is the runtime. The biggest parts are {HOP_LABELS[top[0]]} "
        f"({median[top[0]]:.1f} ms) and {HOP_LABELS[top[1]]} ({median[top[1]]:.1f} ms); "
        f"{ADVICE[top[0]]}, and {ADVICE[top[1]]}."
    ]
    tput = result.throughput
    if tput is not None:
        ours, base = tput.ours, tput.baseline
        cpu_bound = ours.machine_cpu_pct >= 85
        parts.append(
            f"Under {ours.users} users the machine's cores were {ours.machine_cpu_pct:.0f}% "
            f"busy ({'CPU-bound' if cpu_bound else 'not CPU-bound'}); the stack spent "
            f"{_ms(ours.server_cpu_ms_per_run)} ms of CPU per run against "
            f"{_ms(base.server_cpu_ms_per_run)} ms for the baseline, which is what sets the "
            f"{tput.ratio:.2f}x ratio on this machine. The load client itself used "
            f"{ours.client_cpu_pct:.0f}% of a core."
        )
    return " ".join(parts)


def command_line(args: argparse.Namespace) -> str:
    words = [
        "python", "loadtests/bench.py", "--runs", str(args.runs), "--users", str(args.users),
        "--duration", f"{args.duration:g}", "--provider-latency-ms", f"{args.provider_latency_ms:g}",
        "--provider", args.provider,
    ]  # fmt: skip
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
        f"Ray {m.ray}. Other Ray clusters on the machine during the run: "
        f"{m.foreign_ray_clusters}.",
        "",
        f"Settings: `{ASSISTANT}` graph (2 LLM calls per run: router + specialist); "
        f"{provider}, at a fixed {s.provider_latency_ms:g} ms per call, no jitter or failures; "
        f"storage {s.storage}; limiter {s.limiter}, limit raised so it never refuses.",
        "",
        *_md_table(("figure", "result", "target", "verdict"), summary_rows(result)),
        "",
        f"### Where a run's time goes ({over.runs} sequential runs, one client, after "
        f"{s.warmup_runs} warm-up runs; a fresh thread per run; {over.errors} errors)",
        "",
        *_md_table(
            ("part", "median ms", "mean ms"),
            [
                (label, f"{getattr(over.median, k):.1f}", f"{getattr(over.mean, k):.1f}")
                for k, label in HOP_LABELS.items()
            ]
            + [("client latency (p50 / p99)", f"{over.latency_p50_ms:.1f} / "
                f"{over.latency_p99_ms:.1f}", f"{over.mean.total:.1f}")],  # fmt: skip
        ),
        "",
        f"Idle memory: {memory.rss_gib:.2f} GiB RSS (PSS {_gib(memory.pss_gib)}) over "
        f"{memory.processes} processes, {memory.outside_launcher_tree} of them outside the "
        "launcher's process tree. Largest: "
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
                ("system", "runs/s", "p50 ms", "p99 ms", "runs", "errors", "server CPU/run",
                 "client CPU", "machine CPU"),  # fmt: skip
                [
                    (r.system, f"{r.runs_per_s:.1f}", _ms(r.p50_ms), _ms(r.p99_ms), str(r.runs),
                     str(r.errors), f"{_ms(r.server_cpu_ms_per_run)} ms",
                     f"{r.client_cpu_pct:.0f}%", f"{r.machine_cpu_pct:.0f}%")  # fmt: skip
                    for r in (t.ours, t.baseline)
                ],
            ),
            "",
        ]
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
    """A process did not come up; the message carries the tail of its output."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Child:
    """A process this script started, output in a log file, stopped with its descendants."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as out:
            # Its own session: a Ctrl-C here reaches only this script, which stops it in order.
            self.proc = subprocess.Popen(
                argv, cwd=REPO_ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, url: str, timeout_s: float = START_TIMEOUT_S) -> float:
        """Seconds until ``url`` answers 200, polling every 50 ms."""
        started = time.monotonic()
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() - started < timeout_s:
                if self.proc.poll() is not None:
                    raise StartFailed(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
                try:
                    if client.get(url).status_code == 200:
                        return time.monotonic() - started
                except httpx.HTTPError:
                    pass
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
        _, alive = psutil.wait_procs(descendants, timeout=10)
        for proc in alive:
            _kill(proc)


def _kill(proc: psutil.Process) -> None:
    try:
        proc.kill()
    except psutil.NoSuchProcess:
        pass


def processes_with(marker: str) -> list[psutil.Process]:
    """Processes whose command line mentions ``marker`` (this run's Ray temp dir)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if any(marker in arg for arg in cmdline):
            found.append(proc)
    return found


def sweep(marker: str) -> int:
    """Stop the Ray processes of this run that outlived the launcher; how many there were."""
    left = processes_with(marker)
    for proc in left:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(left, timeout=10)
    for proc in alive:
        _kill(proc)
    return len(left)


def _kind(proc: psutil.Process, launcher_pid: int) -> str:
    """A readable name: ``ray::ServeReplica:...``, ``raylet``, ``dashboard`` ..."""
    if proc.pid == launcher_pid:
        return "launcher (driver)"
    cmdline = proc.cmdline() or [proc.name()]
    if cmdline[0].startswith("ray::"):
        return cmdline[0].split()[0]
    script = next((arg for arg in cmdline[1:3] if arg.endswith(".py")), None)
    if script is not None:
        path = Path(script)
        return f"{path.parent.name}/{path.stem}"
    return Path(cmdline[0]).name


def stack_processes(launcher_pid: int, marker: str) -> tuple[list[psutil.Process], int]:
    """The launcher, its descendants and any process of this run's Ray session outside them."""
    root = psutil.Process(launcher_pid)
    tree = [root, *root.children(recursive=True)]
    pids = {proc.pid for proc in tree}
    outside = [proc for proc in processes_with(marker) if proc.pid not in pids]
    return tree + outside, len(outside)


def measure_memory(launcher_pid: int, marker: str) -> IdleMemory:
    procs, outside = stack_processes(launcher_pid, marker)
    rss = pss = 0.0
    pss_known = True
    by_kind: dict[str, float] = {}
    counted = 0
    for proc in procs:
        try:
            info = proc.memory_full_info()
            kind = _kind(proc, launcher_pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        counted += 1
        rss += info.rss
        pss_value = getattr(info, "pss", None)
        pss_known = pss_known and pss_value is not None
        pss += pss_value or 0
        by_kind[kind] = by_kind.get(kind, 0.0) + info.rss / 2**20
    return IdleMemory(
        rss_gib=rss / GIB,
        pss_gib=pss / GIB if pss_known else None,
        processes=counted,
        outside_launcher_tree=outside,
        rss_mib_by_kind=by_kind,
    )


def cpu_seconds(procs: Iterable[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def foreign_raylets(marker: str) -> int:
    count = 0
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") == "raylet" and not any(marker in arg for arg in cmdline):
            count += 1
    return count


def machine(marker: str) -> Machine:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return Machine(
        cpus=os.cpu_count() or 1,
        ram_gib=psutil.virtual_memory().total / GIB,
        cpu_model=model,
        python=platform.python_version(),
        ray=importlib.metadata.version("ray"),
        foreign_ray_clusters=foreign_raylets(marker),
    )


# -- load ------------------------------------------------------------------------------


def run_body(index: int) -> dict[str, Any]:
    prompt = PROMPTS[index % len(PROMPTS)]
    return {"assistant_id": ASSISTANT, "input": {"messages": [{"role": "user", "content": prompt}]}}


def is_answer(response: httpx.Response) -> bool:
    """200 with final values whose last message is the model's (not a run error)."""
    if response.status_code != 200:
        return False
    try:
        messages = response.json().get("messages") or []
    except (ValueError, AttributeError):
        return False
    return bool(messages) and isinstance(messages[-1], dict) and messages[-1].get("type") == "ai"


async def new_thread(client: httpx.AsyncClient) -> str:
    response = await client.post("/threads", json={})
    response.raise_for_status()
    thread_id: str = response.json()["thread_id"]
    return thread_id


async def measure_overhead(base_url: str, headers: Mapping[str, str], runs: int) -> Overhead:
    """Sequential runs, one client, a fresh thread each (thread creation is not timed)."""
    measured: list[tuple[float, ServerTiming]] = []
    errors = 0
    async with httpx.AsyncClient(
        base_url=base_url, headers=dict(headers), timeout=REQUEST_TIMEOUT_S
    ) as client:
        for index in range(WARMUP_RUNS + runs):
            thread_id = await new_thread(client)
            started = time.perf_counter()
            response = await client.post(f"/threads/{thread_id}/runs/wait", json=run_body(index))
            client_ms = (time.perf_counter() - started) * 1000
            if index < WARMUP_RUNS:
                continue
            header = response.headers.get("server-timing")
            if not is_answer(response) or header is None:
                errors += 1
                continue
            measured.append((client_ms, ServerTiming.from_header(header)))
            done = index - WARMUP_RUNS + 1
            if done % 25 == 0 or done == runs:
                print(f"  {done}/{runs} runs", flush=True)
    if not measured:
        raise StartFailed(f"all {runs} runs failed")
    return Overhead.from_runs(measured, errors)


async def load(
    system: str,
    base_url: str,
    headers: Mapping[str, str],
    users: int,
    duration_s: float,
    server: Sequence[psutil.Process],
) -> LoadResult:
    """``users`` clients, each on its own thread, looping runs/wait; only the window counts."""
    ended: list[tuple[float, float, bool]] = []  # (end time, latency ms, ok)
    limits = httpx.Limits(max_connections=users + 4, max_keepalive_connections=users + 4)
    async with httpx.AsyncClient(
        base_url=base_url, headers=dict(headers), timeout=REQUEST_TIMEOUT_S, limits=limits
    ) as client:
        thread_ids = await asyncio.gather(*(new_thread(client) for _ in range(users)))
        start = time.perf_counter()
        window = (start + LOAD_WARMUP_S, start + LOAD_WARMUP_S + duration_s)

        async def user(number: int, thread_id: str) -> None:
            index = number
            while time.perf_counter() < window[1]:
                sent = time.perf_counter()
                try:
                    response = await client.post(
                        f"/threads/{thread_id}/runs/wait", json=run_body(index)
                    )
                    ok = is_answer(response)
                except httpx.HTTPError:
                    ok = False
                now = time.perf_counter()
                ended.append((now, (now - sent) * 1000, ok))
                index += 1

        async def progress() -> None:
            while time.perf_counter() < window[1]:
                await asyncio.sleep(PROGRESS_EVERY_S)
                phase = "warm-up" if time.perf_counter() < window[0] else "measuring"
                fails = sum(not ok for _, _, ok in ended)
                print(f"  {system}: {len(ended)} runs, {fails} errors ({phase})", flush=True)

        tasks = [asyncio.create_task(user(i, t)) for i, t in enumerate(thread_ids)]
        tasks.append(asyncio.create_task(progress()))
        await asyncio.sleep(max(0.0, window[0] - time.perf_counter()))
        me = psutil.Process()
        cpu = (cpu_seconds([me]), cpu_seconds(server), time.perf_counter())
        psutil.cpu_percent(interval=None)
        await asyncio.sleep(max(0.0, window[1] - time.perf_counter()))
        machine_pct = psutil.cpu_percent(interval=None)
        elapsed = time.perf_counter() - cpu[2]
        client_pct = (cpu_seconds([me]) - cpu[0]) / elapsed * 100
        server_pct = (cpu_seconds(server) - cpu[1]) / elapsed * 100
        await asyncio.gather(*tasks)
    counted = [(latency, ok) for end, latency, ok in ended if window[0] <= end <= window[1]]
    latencies = [latency for latency, ok in counted if ok]
    return LoadResult(
        system=system,
        users=users,
        duration_s=duration_s,
        runs=len(latencies),
        errors=len(counted) - len(latencies),
        runs_per_s=len(latencies) / duration_s,
        p50_ms=percentile(latencies, 50) if latencies else None,
        p99_ms=percentile(latencies, 99) if latencies else None,
        client_cpu_pct=client_pct,
        server_cpu_pct=server_pct,
        machine_cpu_pct=machine_pct,
    )

"""``make bench``'s report: the terminal table, the reading of where the time goes, and the
section of ``docs/benchmarks.md`` between the bench markers.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from loadtests.bench_figures import HOP_LABELS, BenchResult, HopBreakdown
from loadtests.bench_load import ASSISTANT

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START_MARK, END_MARK = "<!-- bench:start -->", "<!-- bench:end -->"


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


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def aligned(rows: Sequence[Sequence[str]]) -> str:
    """Rows as plain-text columns for the terminal (markdown bold dropped)."""
    plain = [[cell.replace("**", "") for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in plain) for i in range(len(plain[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in plain
    )


def render_table(result: BenchResult) -> str:
    """Aligned plain-text summary for the terminal."""
    return aligned([("figure", "result", "target", "verdict"), *summary_rows(result)])


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
        *md_table(("figure", "result", "target", "verdict"), summary_rows(result)),
        "",
        f"### Where a run's time goes ({over.runs} sequential runs, one client, after "
        f"{s.warmup_runs} warm-up runs; a fresh thread per run; {over.errors} errors"
        + (f": {over.error_kinds})" if over.errors else ")"),
        "",
        *md_table(
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
            *md_table(
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


def replace_section(
    document: str, section: str, marks: tuple[str, str] = (START_MARK, END_MARK)
) -> str:
    """``document`` with the text between the ``marks`` (start, end) replaced (appended
    with them if absent)."""
    start_mark, end_mark = marks
    block = f"{start_mark}\n{section.strip()}\n{end_mark}"
    start, end = document.find(start_mark), document.find(end_mark)
    if start == -1 or end < start:
        return document.rstrip() + "\n\n" + block + "\n"
    return document[:start] + block + document[end + len(end_mark) :]


def write_doc(result: BenchResult, path: Path = DOC) -> None:
    document = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(replace_section(document, render_section(result)))

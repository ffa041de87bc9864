"""``make soak``'s figures: what the samples say against the targets, as a table, a section
of ``docs/reliability.md`` and a PNG of memory and latency over time.

Targets (issue 13): after the warm-up, no process's RSS grows by 10% or more; no errors;
p99 flat: the last window's p99 within 20% of the first window's (both after warm-up).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DOC = REPO_ROOT / "docs" / "reliability.md"
PNG = REPO_ROOT / "docs" / "img" / "soak.png"
START_MARK = "<!-- soak:start (written by loadtests/soak.py) -->"
END_MARK = "<!-- soak:end -->"
RSS_GROWTH_MAX = 0.10
P99_DRIFT_MAX = 0.20


@dataclass
class Sample:
    """One look at the stack: seconds since the load began, RSS by process (label: MiB)."""

    at_s: float
    rss_mib: dict[str, float]


@dataclass
class Soak:
    """What one soak measured; ``ended`` holds (seconds since start, latency ms, error)."""

    command: str
    date: str
    minutes: float
    users: int
    storage: str  # e.g. "PostgreSQL + Redis"
    warmup_s: float
    window_s: float
    ended: list[tuple[float, float, str | None]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)

    def errors(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, _, error in self.ended:
            if error is not None:
                counts[error] = counts.get(error, 0) + 1
        return counts

    def latencies(self, start_s: float, end_s: float) -> list[float]:
        return [ms for at, ms, error in self.ended if error is None and start_s <= at < end_s]

    def p99_windows(self) -> tuple[float, float]:
        """p99 of the first window after warm-up and of the last window."""
        end = max((at for at, _, _ in self.ended), default=0.0)
        first = self.latencies(self.warmup_s, self.warmup_s + self.window_s)
        last = self.latencies(end - self.window_s, end + 1)
        return p99(first), p99(last)

    def rss_growth(self) -> dict[str, tuple[float, float]]:
        """Per process alive from the warm-up to the end: (MiB after warm-up, MiB at the end)."""
        after = next((s for s in self.samples if s.at_s >= self.warmup_s), None)
        if after is None or not self.samples:
            return {}
        last = self.samples[-1]
        return {
            label: (mib, last.rss_mib[label])
            for label, mib in after.rss_mib.items()
            if label in last.rss_mib
        }

    def verdicts(self) -> list[tuple[str, str, bool]]:
        """(target, measured, met) for each target."""
        growth = self.rss_growth()
        worst = max(growth.items(), key=lambda item: item[1][1] / item[1][0], default=None)
        rows = []
        if worst is not None:
            label, (start, end) = worst
            ratio = end / start - 1
            rows.append(
                (
                    f"RSS growth per process after warm-up < {RSS_GROWTH_MAX:.0%}",
                    f"largest {ratio:+.1%} ({label}: {start:.0f} -> {end:.0f} MiB)",
                    ratio < RSS_GROWTH_MAX,
                )
            )
        errors = self.errors()
        rows.append(("0 errors", f"{sum(errors.values())} {errors or ''}".strip(), not errors))
        first, last = self.p99_windows()
        drift = last / first - 1 if first else float("inf")
        rows.append(
            (
                f"p99 flat (last window within {P99_DRIFT_MAX:.0%} of the first)",
                f"{first:.0f} -> {last:.0f} ms ({drift:+.1%})",
                abs(drift) <= P99_DRIFT_MAX,
            )
        )
        return rows


def p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100)[98]


def render(soak: Soak) -> str:
    runs = [ms for _, ms, error in soak.ended if error is None]
    total = soak.samples[-1].rss_mib if soak.samples else {}
    lines = [
        f"Latest run, {soak.date}: `{soak.command}` on {soak.storage} ({soak.minutes:g} min, "
        f"{soak.users} users "
        f"looping `runs/wait` on their own threads; warm-up {soak.warmup_s / 60:.1f} min, "
        f"p99 windows of {soak.window_s / 60:.1f} min).",
        "",
        f"{len(soak.ended)} runs, p50 {statistics.median(runs) if runs else 0:.0f} ms, "
        f"p99 {p99(runs):.0f} ms; the stack's RSS at the end {sum(total.values()) / 1024:.2f} GiB "
        f"in {len(total)} processes.",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        *(f"| {t} | {m} | {'yes' if ok else 'no'} |" for t, m, ok in soak.verdicts()),
        "",
        f"![RSS and p99 over the soak](img/{PNG.name})",
    ]
    return "\n".join(lines)


def write_doc(soak: Soak, path: Path = DOC) -> None:
    document = path.read_text()
    block = f"{START_MARK}\n{render(soak)}\n{END_MARK}"
    start, end = document.find(START_MARK), document.find(END_MARK)
    if start == -1 or end < start:
        document = document.rstrip() + "\n\n## Soak (`make soak`)\n\n" + block + "\n"
    else:
        document = document[:start] + block + document[end + len(END_MARK) :]
    path.write_text(document)


def write_png(soak: Soak, path: Path = PNG) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (memory, latency) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    minutes = [s.at_s / 60 for s in soak.samples]
    labels = sorted({label for s in soak.samples for label in s.rss_mib})
    biggest = sorted(labels, key=lambda lb: -max(s.rss_mib.get(lb, 0) for s in soak.samples))[:6]
    for label in biggest:
        memory.plot(
            minutes, [s.rss_mib.get(label, float("nan")) for s in soak.samples], label=label
        )
    memory.set_ylabel("RSS, MiB")
    memory.legend(fontsize=7, loc="upper left")
    memory.set_title("The six largest processes of the stack, and p99 per minute")
    end = max((at for at, _, _ in soak.ended), default=0.0)
    per_minute = [
        (m + 0.5, p99(soak.latencies(m * 60, (m + 1) * 60))) for m in range(int(end // 60) + 1)
    ]
    latency.plot([m for m, _ in per_minute], [v for _, v in per_minute], marker=".")
    latency.set_ylabel("runs/wait p99, ms")
    latency.set_xlabel("minutes since the load began")
    for axis in (memory, latency):
        axis.axvline(soak.warmup_s / 60, color="grey", linestyle=":")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
